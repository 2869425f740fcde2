// The main window as a user drives it (offscreen): open a checkpoint and an image, every view
// shows the result, errors are reported (not thrown, not only printed), export from the dialog
// writes files that parse, a comparison checkpoint appears in Compare, drag and drop works.

#include <QDropEvent>
#include <QFile>
#include <QLabel>
#include <QMimeData>
#include <QSignalSpy>
#include <QSvgRenderer>
#include <QTemporaryDir>
#include <QTreeView>
#include <QTreeWidget>
#include <QtTest/QtTest>

#include "explorer_fixture.h"
#include "fec/ui/compare_panel.h"
#include "fec/ui/export_dialog.h"
#include "fec/ui/hierarchy_panel.h"
#include "fec/ui/image_gallery.h"
#include "fec/ui/image_view.h"
#include "fec/ui/main_window.h"
#include "fec/ui/model_info_panel.h"
#include "fec/ui/prediction_panel.h"
#include "fec/ui/pyramid_panel.h"
#include "fec/ui/selection_model.h"
#include "fec/ui/theme.h"

using namespace fec::ui;

class TestMainWindow : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        FEC_REQUIRE_FIXTURE("tiny_seed0.pth.tar");
        FEC_REQUIRE_FIXTURE("inputs/chelsea.png");
        QVERIFY(m_dir.isValid());
        MainWindowOptions options;
        options.useSettings = false;
        options.interactive = false;
        options.loadDefaults = false;
        m_window = new MainWindow(options);
        m_window->resize(1400, 900);
        m_window->show();
        QVERIFY(QTest::qWaitForWindowExposed(m_window));
    }

    void cleanupTestCase() { delete m_window; }

    void startsWithGuidance()
    {
        QVERIFY(!m_window->isModelLoaded());
        QVERIFY(m_window->isSettled());
        // The guidance page offers to open a checkpoint.
        bool found = false;
        for (auto* label : m_window->findChildren<QLabel*>())
            found = found || (label->isVisible() && label->text().contains(QStringLiteral("No model is loaded")));
        QVERIFY(found);
    }

    void loadsAndShowsAResult()
    {
        QSignalSpy loaded(m_window, &MainWindow::modelLoaded);
        QSignalSpy shown(m_window, &MainWindow::resultShown);
        m_window->openCheckpoint(fec::test::refPath("tiny_seed0.pth.tar"));
        QVERIFY(m_window->isBusy());
        QVERIFY(loaded.wait(30000));
        m_window->openImages({fec::test::chelseaPath()});
        QTRY_VERIFY_WITH_TIMEOUT(m_window->isViewUpToDate(), 60000);
        QVERIFY(shown.size() >= 1);
        const auto result = m_window->currentResult();
        QVERIFY(result);
        QCOMPARE(result->imagePath, QFileInfo(fec::test::chelseaPath()).absoluteFilePath());
        QCOMPARE(m_window->gallery()->model()->count(), 1);
        QVERIFY(!m_window->predictionPanel()->predictions().empty());
        QVERIFY(m_window->modelInfoPanel()->table()->rowCount() > 5);
        QVERIFY(m_window->windowTitle().contains(QStringLiteral("chelsea.png")));
        QVERIFY(m_window->lastUpdateMs() > 0);
        QCOMPARE(m_window->pyramidPanel()->renderedRequestId(), result->requestId);
        QVERIFY(m_window->isSettled());
    }

    void everyViewShowsTheResult()
    {
        using V = MainWindow::View;
        for (V view : {V::Compare, V::Hierarchy, V::Heads, V::Statistics, V::Evidence, V::ThreeD, V::Pyramid}) {
            m_window->showView(view);
            QCOMPARE(m_window->currentView(), view);
            QTRY_VERIFY2_WITH_TIMEOUT(m_window->isViewUpToDate(), qPrintable(state()), 10000);
        }
        QCOMPARE(m_window->hierarchyPanel()->tree()->model()->rowCount(),
                 static_cast<int>(m_window->currentResult()->pyramid.levelNodes.back().size()));
        QVERIFY(m_window->comparePanel()->isRendered());
        const QImage shot = m_window->grabWindowImage();
        QCOMPARE(shot.size() / shot.devicePixelRatio(), m_window->size());
    }

    void levelAndKFromTheCommandLine()
    {
        m_window->setLevel(2);
        QCOMPARE(m_window->pyramidPanel()->level(), 2);
        m_window->setK(4);
        QVERIFY(m_window->pyramidPanel()->isKMeans());
        QCOMPARE(m_window->pyramidPanel()->k(), 4);
        m_window->setLevel(3);
        QVERIFY(!m_window->pyramidPanel()->isKMeans());
    }

    void changingTheInputSizeReruns()
    {
        m_window->setSessionOverrides(256, QStringLiteral("crop"), QString());
        QTRY_VERIFY2_WITH_TIMEOUT(m_window->currentResult() && m_window->currentResult()->pyramid.inputH == 256 &&
                                      m_window->isViewUpToDate(),
                                  qPrintable(state()), 60000);
        QVERIFY(m_window->currentResult()->prepared.mapping.offsetX > 0);  // centre crop of a wide image
        m_window->setSessionOverrides(224, QStringLiteral("squash"), QString());
        QTRY_VERIFY_WITH_TIMEOUT(m_window->currentResult()->pyramid.inputH == 224 && m_window->isViewUpToDate(), 60000);
    }

    void selectionReachesTheTree()
    {
        const auto& p = m_window->currentResult()->pyramid;
        const int node = p.levelNodes[0][5];
        m_window->showView(MainWindow::View::Hierarchy);
        m_window->selectionModel()->setSelectedNode(node);
        auto* tree = m_window->hierarchyPanel()->tree();
        QCOMPARE(tree->currentIndex().data(Qt::UserRole + 1).toInt(), node);
        QCOMPARE(m_window->hierarchyPanel()->pyramidPanel()->view()->highlight().selectedMask, p.blockMask(node));
        m_window->showView(MainWindow::View::Pyramid);
        QCOMPARE(m_window->pyramidPanel()->view()->highlight().selectedMask, p.blockMask(node));
        m_window->selectionModel()->setSelectedNode(-1);
    }

    void hoverShowsLineageAndDarkThemeIsReadable()
    {
        m_window->showView(MainWindow::View::Pyramid);
        m_window->setLevel(2);
        const auto& p = m_window->currentResult()->pyramid;
        auto* view = m_window->pyramidPanel()->view();
        const QPoint pixel(120, 90);
        m_window->selectionModel()->setSelectedNode(p.nodeOf(2, p.clusterAt(2, pixel.x(), pixel.y())));
        const auto& m = view->pixelMapping();
        const QPointF pos = view->widgetPointOf(
            QPointF(m.offsetX + (pixel.x() + 0.5) * m.scaleX, m.offsetY + (pixel.y() + 0.5) * m.scaleY));
        QMouseEvent move(QEvent::MouseMove, pos, view->mapToGlobal(pos), Qt::NoButton, Qt::NoButton, Qt::NoModifier);
        QApplication::sendEvent(view, &move);
        QCOMPARE(m_window->selectionModel()->hoveredPixel(), pixel);
        // The lineage dock lists the pixel's cluster at every level.
        auto* lineage = m_window->findChild<QTreeWidget*>();
        QVERIFY(lineage);
        QCOMPARE(lineage->topLevelItemCount(), p.levelCount());
        for (int l = 1; l <= p.levelCount(); ++l)
            QCOMPARE(lineage->topLevelItem(l - 1)->text(1),
                     QStringLiteral("#%1").arg(p.clusterAt(l, pixel.x(), pixel.y())));
        const QImage light = m_window->grabWindowImage();
        applyTheme(Theme::Dark);
        QVERIFY(m_window->palette().color(QPalette::Window).lightness() < 100);
        const QImage dark = m_window->grabWindowImage();
        auto meanGrey = [](const QImage& image) {
            double sum = 0;
            int n = 0;
            for (int y = 0; y < image.height(); y += 7)
                for (int x = 0; x < image.width(); x += 7, ++n)
                    sum += qGray(image.pixel(x, y));
            return sum / n;
        };
        QVERIFY(meanGrey(dark) < meanGrey(light) - 30);
        if (qEnvironmentVariableIsSet("FEC_SCREENSHOT_DIR")) {
            const QDir out(qEnvironmentVariable("FEC_SCREENSHOT_DIR"));
            light.save(out.filePath(QStringLiteral("explorer_selection.png")));
            dark.save(out.filePath(QStringLiteral("explorer_dark.png")));
        }
        applyTheme(Theme::System);
        m_window->selectionModel()->setSelectedNode(-1);
        QEvent leave(QEvent::Leave);
        QApplication::sendEvent(view, &leave);
    }

    void exportFromTheDialogWritesFilesThatParse()
    {
        const auto result = m_window->currentResult();
        QVERIFY(result);
        const QImage current = m_window->currentViewImage();
        QCOMPARE(current.size(), QSize(451, 300));  // the pyramid overlay at the image's own resolution
        for (const QString ext : {QStringLiteral("png"), QStringLiteral("svg"), QStringLiteral("pdf")}) {
            ExportDialog dialog(result, current, m_window);
            ExportRequest request;
            request.kind = ExportRequest::Kind::Figure;
            request.path = m_dir.filePath(QStringLiteral("figure.") + ext);
            request.dpi = 96;
            request.levels = {1, 2, 3};
            request.ks = {3};
            dialog.setRequest(request);
            dialog.accept();
            QVERIFY2(QFileInfo::exists(request.path), qPrintable(request.path));
            QFile file(request.path);
            QVERIFY(file.open(QIODevice::ReadOnly));
            const QByteArray bytes = file.readAll();
            if (ext == QLatin1String("png")) {
                QImage image;
                QVERIFY(image.loadFromData(bytes, "PNG"));
                QVERIFY(image.width() > 400);
            } else if (ext == QLatin1String("svg")) {
                QSvgRenderer svg(bytes);
                QVERIFY(svg.isValid());
                QVERIFY(svg.defaultSize().width() > 100);
            } else {
                QVERIFY(bytes.startsWith("%PDF-"));
                QVERIFY(bytes.trimmed().endsWith("%%EOF"));
            }
        }
        ExportDialog dialog(result, current, m_window);
        ExportRequest request;
        request.kind = ExportRequest::Kind::CurrentView;
        request.path = m_dir.filePath(QStringLiteral("view.png"));
        dialog.setRequest(request);
        dialog.accept();
        QImage view(request.path);
        QCOMPARE(view.size(), current.size());
    }

    void comparisonCheckpointAppearsInCompare()
    {
        QSignalSpy shown(m_window, &MainWindow::resultShown);
        m_window->openComparisonCheckpoint(fec::test::refPath("tiny_seed0_legacy.pth"));
        QTRY_VERIFY_WITH_TIMEOUT(m_window->secondaryResult() != nullptr, 60000);
        QCOMPARE(m_window->currentView(), MainWindow::View::Compare);
        QTRY_VERIFY_WITH_TIMEOUT(m_window->isViewUpToDate(), 30000);
        auto* compare = m_window->comparePanel();
        QCOMPARE(compare->source(1).kind, ComparePanel::Source::Kind::SecondModel);
        QVERIFY(!compare->view(1)->image().isNull());
        QVERIFY(compare->view(1)->caption().contains(QStringLiteral("tiny_seed0_legacy.pth")));
        m_window->showView(MainWindow::View::Pyramid);
    }

    void errorsAreReportedNotThrown()
    {
        QSignalSpy errors(m_window, &MainWindow::errorOccurred);
        const QString missing = m_dir.filePath(QStringLiteral("missing-image.png"));
        m_window->openImages({missing});
        QVERIFY(errors.wait(30000));
        QVERIFY2(errors.last().first().toString().contains(QStringLiteral("missing-image.png")),
                 qPrintable(errors.last().first().toString()));
        QTRY_VERIFY_WITH_TIMEOUT(m_window->isSettled(), 30000);
        QVERIFY(!m_window->currentResult());
        QVERIFY(m_window->lastError().contains(QStringLiteral("missing-image.png")));

        const QString corrupt = m_dir.filePath(QStringLiteral("broken.pth.tar"));
        QFile f(corrupt);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write("PK\x03\x04 definitely not a checkpoint");
        f.close();
        m_window->openComparisonCheckpoint(corrupt);
        QVERIFY(errors.wait(30000));
        QVERIFY(errors.last().first().toString().contains(QStringLiteral("broken.pth.tar")));
        QVERIFY(m_window->isModelLoaded());  // the main model is untouched
    }

    void dropsCheckpointsAndImages()
    {
        QSignalSpy loaded(m_window, &MainWindow::modelLoaded);
        QMimeData mime;
        mime.setUrls({QUrl::fromLocalFile(fec::test::refPath("tiny_seed0.pth.tar")),
                      QUrl::fromLocalFile(fec::test::chelseaPath())});
        const QPoint pos(700, 400);
        QDragEnterEvent enter(pos, Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
        QApplication::sendEvent(m_window, &enter);
        QVERIFY(enter.isAccepted());
        QDropEvent drop(QPointF(pos), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
        QApplication::sendEvent(m_window, &drop);
        QVERIFY(loaded.wait(30000));
        QTRY_VERIFY_WITH_TIMEOUT(m_window->currentResult() && m_window->isViewUpToDate(), 60000);
        QVERIFY(m_window->lastError().isEmpty());
    }

private:
    QString state() const
    {
        const auto r = m_window->currentResult();
        return QStringLiteral("view %1 busy %2 result %3 pyramid drawn %4 hierarchy drawn %5 compare drawn %6")
            .arg(static_cast<int>(m_window->currentView()))
            .arg(m_window->isBusy())
            .arg(r ? r->requestId : 0)
            .arg(m_window->pyramidPanel()->renderedRequestId())
            .arg(m_window->hierarchyPanel()->pyramidPanel()->renderedRequestId())
            .arg(m_window->comparePanel()->isRendered());
    }

    QTemporaryDir m_dir;
    MainWindow* m_window = nullptr;
};

QTEST_MAIN(TestMainWindow)
#include "test_main_window.moc"
