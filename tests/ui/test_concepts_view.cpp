// The Concepts view with a tiny real atlas (24 Fashion-MNIST test images, K = 3, the shipped
// default model): the grid shows K tiles with their names and sizes, a concept's bars are its
// class counts and mean evidence, a rename (F2) is saved into concepts.json, another model's atlas
// is refused naming both hashes, a build can be cancelled (and a second build cancels the first),
// and in the window a segment of the list opens its image with that segment selected.

#include <algorithm>
#include <map>
#include <numeric>
#include <set>

#include <QDir>
#include <QFile>
#include <QLineEdit>
#include <QListView>
#include <QSignalSpy>
#include <QStandardItemModel>
#include <QTableView>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include "fec/explain/concepts.h"
#include "fec/file_hash.h"
#include "fec/ui/concepts_view.h"
#include "fec/ui/evidence_view.h"
#include "fec/ui/export_dialog.h"
#include "fec/ui/image_view.h"
#include "fec/ui/main_window.h"
#include "fec/ui/model_bundle.h"
#include "fec/ui/pyramid_panel.h"
#include "fec/ui/qcustomplot_wrapper.h"
#include "fec/ui/selection_model.h"
#include "plot_values.h"

using namespace fec::ui;
using fec::test::barValues;

namespace {

const QString kFashion = QStringLiteral("/usr/share/datasets/fashion-mnist");

QString defaultModel()
{
    const QDir models(QStringLiteral(FEC_SOURCE_DIR "/models"));
    const auto found = models.entryList({QStringLiteral("fec-fashion-128.pth.tar")}, QDir::Files);
    return found.isEmpty() ? QString() : models.absoluteFilePath(found.first());
}

ConceptsView::ModelFactory factoryFor(const QString& checkpoint)
{
    return [checkpoint] {
        ModelLoadOptions load;
        load.path = checkpoint;
        load.device = QStringLiteral("cpu");
        const auto bundle = loadModelBundle(load);
        ConceptsView::BuildModel m;
        m.keepAlive = bundle;
        m.model = bundle->loaded.model.ptr().get();
        m.info = bundle->loaded.info;
        m.checkpoint = checkpoint.toStdString();
        m.classNames = bundle->classNames;
        return m;
    };
}

}  // namespace

class TestConceptsView : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        m_model = defaultModel();
        if (m_model.isEmpty())
            QSKIP("models/fec-fashion-128.pth.tar is missing");
        if (!QFileInfo::exists(kFashion + QStringLiteral("/t10k-images-idx3-ubyte.gz")))
            QSKIP(
                "Fashion-MNIST is not installed at /usr/share/datasets/fashion-mnist (Debian: dataset-fashion-mnist)");
        QVERIFY(m_dir.isValid());
        m_atlasDir = m_dir.filePath(QStringLiteral("atlas"));
        // The tiny atlas, through the same engine calls `fec concepts` makes.
        const auto m = factoryFor(m_model)();
        const auto data = fec::explain::openAtlasData(kFashion.toStdString(), "test", 24, 0, m.classNames);
        fec::explain::ConceptOptions options;
        options.k = 3;
        options.batch = 24;
        const auto atlas = fec::explain::buildAtlas(*m.model, m.info, m.checkpoint, m.device, data, options);
        fec::explain::writeAtlas(atlas, m_atlasDir.toStdString(), *m.model, m.device, data);
        m_atlas = fec::explain::readAtlas(m_atlasDir.toStdString());
        QCOMPARE(m_atlas.k, 3);
    }

    void gridShowsEveryConceptWithNameAndSize()
    {
        ConceptsView view;
        view.resize(1200, 800);
        view.show();
        view.setCheckpoint(m_model);
        QSignalSpy changed(&view, &ConceptsView::atlasChanged);
        view.openAtlas(m_atlasDir);
        QVERIFY(!view.isSettled());
        QVERIFY(changed.wait(20000));
        QVERIFY(view.isSettled());
        QVERIFY(view.lastError().isEmpty());
        auto* model = view.grid()->model();
        QCOMPARE(model->rowCount(), 3);
        int64_t total = 0;
        for (int k = 0; k < 3; ++k) {
            const QModelIndex index = model->index(k, 0);
            const QString text = index.data(Qt::DisplayRole).toString();
            QVERIFY2(text.startsWith(QStringLiteral("concept %1\n").arg(k)), qPrintable(text));
            QVERIFY2(text.contains(QStringLiteral("%1 segments").arg(m_atlas.concepts[k].size)), qPrintable(text));
            QCOMPARE(index.data(ConceptListModel::SizeRole).toLongLong(), m_atlas.concepts[k].size);
            // The thumbnail is the contact sheet written by writeAtlas.
            const QPixmap thumb = index.data(Qt::DecorationRole).value<QPixmap>();
            QVERIFY(!thumb.isNull());
            QVERIFY(!view.bundle().sheets[k].isNull());
            total += index.data(ConceptListModel::SizeRole).toLongLong();
        }
        QCOMPARE(total, static_cast<int64_t>(m_atlas.segments.size()));
        QCOMPARE(view.currentConcept(), 0);
        QVERIFY(view.statusText().contains(QStringLiteral("3 concepts")));
    }

    void selectingAConceptFillsItsBarsAndSegments()
    {
        ConceptsView view;
        view.resize(1200, 800);
        view.show();
        QSignalSpy changed(&view, &ConceptsView::atlasChanged);
        view.openAtlas(m_atlasDir);
        QVERIFY(changed.wait(20000));
        for (int k : {2, 1}) {
            view.grid()->setCurrentIndex(view.grid()->model()->index(k, 0));
            QCOMPARE(view.currentConcept(), k);
            const auto& c = m_atlas.concepts[k];
            const double total = std::accumulate(c.classCounts.begin(), c.classCounts.end(), 0.0);
            const auto shares = barValues(view.frequencyPlot());
            QCOMPARE(shares.size(), c.classCounts.size());
            for (size_t i = 0; i < shares.size(); ++i)
                QVERIFY(std::abs(shares[i] - c.classCounts[i] / total) < 1e-9);
            const auto evidence = barValues(view.evidencePlot());
            QCOMPARE(evidence.size(), c.meanEvidence.size());
            for (size_t i = 0; i < evidence.size(); ++i)
                QVERIFY(std::abs(evidence[i] - c.meanEvidence[i]) < 1e-9);
            // Every kept segment is listed once, and belongs to this concept.
            std::set<int64_t> kept(c.typical.begin(), c.typical.end());
            kept.insert(c.contributing.begin(), c.contributing.end());
            QCOMPARE(view.segmentTable()->model()->rowCount(), static_cast<int>(kept.size()));
            for (int row = 0; row < view.segmentTable()->model()->rowCount(); ++row) {
                const int64_t s = view.segmentAtRow(row);
                QVERIFY(kept.count(s) == 1);
                QCOMPARE(m_atlas.segments[s].concept, k);
            }
            // The contact sheet is a gallery: each tile (inside the sheet) names its segment.
            const QImage& sheet = view.sheetView()->image();
            QVERIFY(!sheet.isNull());
            const auto tiles = fec::explain::contactSheetTiles(c);
            QCOMPARE(tiles.size(), c.typical.size() + c.contributing.size());
            for (const auto& tile : tiles) {
                QVERIFY(QRect(0, 0, sheet.width(), sheet.height())
                            .contains(QRect(tile.x, tile.y, tile.width, tile.height)));
                QCOMPARE(view.sheetSegmentAt(QPoint(tile.x + tile.width / 2, tile.y + tile.height / 2)), tile.segment);
            }
            QCOMPARE(view.sheetSegmentAt(QPoint(2, 2)), qint64(-1));  // the title line
        }
    }

    void renameIsSavedAndShown()
    {
        ConceptsView view;
        view.resize(1200, 800);
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        QSignalSpy changed(&view, &ConceptsView::atlasChanged);
        view.openAtlas(m_atlasDir);
        QVERIFY(changed.wait(20000));
        // F2 on the tile opens its editor, as a user renames.
        view.grid()->setFocus();
        view.grid()->setCurrentIndex(view.grid()->model()->index(2, 0));
        QTest::keyClick(view.grid(), Qt::Key_F2);
        auto* editor = view.grid()->findChild<QLineEdit*>();
        QVERIFY(editor);
        editor->selectAll();
        QTest::keyClicks(editor, QStringLiteral("collar"));
        QTest::keyClick(editor, Qt::Key_Return);
        QTRY_VERIFY(view.grid()->model()->index(2, 0).data().toString().startsWith(QStringLiteral("collar\n")));
        QVERIFY(view.grid()->model()->index(2, 0).data(Qt::ToolTipRole).toString().contains(QStringLiteral("collar")));
        const auto back = fec::explain::readAtlas(m_atlasDir.toStdString());
        QCOMPARE(QString::fromStdString(back.concepts[2].name), QStringLiteral("collar"));
        QCOMPARE(back.conceptLabel(0), std::string("concept 0"));
        QCOMPARE(back.segments.size(), m_atlas.segments.size());
        // An empty name goes back to "concept 2".
        QVERIFY(view.renameConcept(2, QString()));
        QCOMPARE(fec::explain::readAtlas(m_atlasDir.toStdString()).conceptLabel(2), std::string("concept 2"));
    }

    void anotherModelsAtlasIsRefused()
    {
        QTemporaryDir other;
        const QString file = other.filePath(QStringLiteral("other.pth.tar"));
        {
            QFile f(file);
            QVERIFY(f.open(QIODevice::WriteOnly));
            f.write("another model file");
        }
        ConceptsView view;
        view.setCheckpoint(file);
        QSignalSpy failed(&view, &ConceptsView::failed);
        view.openAtlas(m_atlasDir);
        QVERIFY(failed.wait(20000));
        const QString message = failed.first().at(1).toString();
        QVERIFY2(message.contains(QString::fromStdString(m_atlas.modelSha1)), qPrintable(message));
        QVERIFY2(message.contains(QString::fromStdString(fec::fileSha1(file.toStdString()))), qPrintable(message));
        QCOMPARE(view.grid()->model()->rowCount(), 0);
        QVERIFY(view.statusText().contains(QStringLiteral("Refused")));

        // A model that arrives while the atlas is being read is checked too (fec-explorer --atlas).
        ConceptsView early;
        QSignalSpy earlyFailed(&early, &ConceptsView::failed);
        early.openAtlas(m_atlasDir);
        early.setCheckpoint(file);
        QVERIFY(earlyFailed.wait(20000));
        QTRY_VERIFY(early.isSettled());
        QVERIFY(!early.atlas());

        // An atlas shown is closed when the model changes to another file.
        ConceptsView shown;
        shown.setCheckpoint(m_model);
        QSignalSpy changed(&shown, &ConceptsView::atlasChanged);
        shown.openAtlas(m_atlasDir);
        QVERIFY(changed.wait(20000));
        QCOMPARE(shown.grid()->model()->rowCount(), 3);
        QSignalSpy refused(&shown, &ConceptsView::failed);
        shown.setCheckpoint(file);
        QVERIFY(refused.wait(20000));
        QCOMPARE(shown.grid()->model()->rowCount(), 0);
        QVERIFY(!shown.atlas());
    }

    void secondBuildCancelsTheFirstAndCancelLeavesNothing()
    {
        const QString first = m_dir.filePath(QStringLiteral("first")),
                      second = m_dir.filePath(QStringLiteral("second"));
        {
            ConceptsView view;
            view.setModelFactory(factoryFor(m_model));
            QSignalSpy finished(&view, &ConceptsView::buildFinished);
            AtlasBuildRequest big;
            big.data = kFashion;
            big.limit = 3000;
            big.outDir = first;
            big.options.k = 3;
            view.buildAtlas(big);
            QVERIFY(view.isBuilding());
            QVERIFY(!view.isSettled());
            QTRY_VERIFY_WITH_TIMEOUT(view.progressBar()->maximum() > 1 && view.progressBar()->value() > 0, 20000);
            AtlasBuildRequest small = big;
            small.limit = 24;
            small.outDir = second;
            view.buildAtlas(small);
            // The first reports cancelled at once; the second finishes and is shown.
            QCOMPARE(finished.size(), 1);
            QCOMPARE(finished.first().at(0).toBool(), false);
            QTRY_VERIFY_WITH_TIMEOUT(finished.size() == 2, 20000);
            QVERIFY2(finished.at(1).at(0).toBool(), qPrintable(finished.at(1).at(1).toString()));
            QCOMPARE(view.atlasDir(), QFileInfo(second).absoluteFilePath());
            QCOMPARE(view.grid()->model()->rowCount(), 3);
            QVERIFY(QFileInfo::exists(second + QStringLiteral("/concepts.json")));

            // A third build, cancelled by the user.
            big.outDir = m_dir.filePath(QStringLiteral("third"));
            view.buildAtlas(big);
            QTRY_VERIFY_WITH_TIMEOUT(view.progressBar()->value() > 0, 20000);
            view.cancelBuild();
            QVERIFY(!view.isBuilding());
            QCOMPARE(finished.size(), 3);
            QVERIFY(!finished.last().at(0).toBool());
            QVERIFY(view.statusText().contains(QStringLiteral("cancelled")));
            // The atlas shown stays.
            QCOMPARE(view.atlasDir(), QFileInfo(second).absoluteFilePath());
        }  // the destructor waits for the cancelled jobs
        QVERIFY(!QFileInfo::exists(first + QStringLiteral("/concepts.json")));
        QVERIFY(!QFileInfo::exists(m_dir.filePath(QStringLiteral("third/concepts.json"))));
    }

    void segmentOpensItsImageWithTheSegmentSelected()
    {
        MainWindowOptions options;
        options.useSettings = false;
        options.interactive = false;
        options.loadDefaults = false;
        MainWindow window(options);
        window.resize(1400, 900);
        window.show();
        QVERIFY(QTest::qWaitForWindowExposed(&window));
        QSignalSpy loaded(&window, &MainWindow::modelLoaded);
        window.openCheckpoint(m_model);
        QVERIFY(loaded.wait(30000));
        QVERIFY(MainWindow::viewFromName(QStringLiteral("concepts"), nullptr));
        window.showView(MainWindow::View::Concepts);
        auto* view = window.conceptsView();
        QSignalSpy changed(view, &ConceptsView::atlasChanged);
        window.openAtlas(m_atlasDir);
        QVERIFY(changed.wait(20000));
        QTRY_VERIFY(window.isSettled());
        view->grid()->setCurrentIndex(view->grid()->model()->index(1, 0));
        // Click the first tile of the concept's contact sheet (its gallery).
        QVERIFY(view->segmentTable()->model()->rowCount() > 0);
        const auto tiles = fec::explain::contactSheetTiles(m_atlas.concepts[1]);
        QVERIFY(!tiles.empty());
        const int64_t s = tiles.front().segment;
        const auto& seg = m_atlas.segments[s];
        auto* sheet = view->sheetView();
        QTRY_VERIFY(!sheet->image().isNull());
        const QPointF tileCentre(tiles.front().x + tiles.front().width / 2.0,
                                 tiles.front().y + tiles.front().height / 2.0);
        QTest::mouseClick(sheet, Qt::LeftButton, {}, sheet->widgetPointOf(tileCentre).toPoint());
        QTRY_VERIFY_WITH_TIMEOUT(window.currentView() == MainWindow::View::Pyramid, 10000);
        QTRY_VERIFY_WITH_TIMEOUT(window.isViewUpToDate(), 30000);
        const auto result = window.currentResult();
        QVERIFY(result);
        QVERIFY2(result->imagePath.contains(
                     QStringLiteral("-%1.png").arg(QString::fromStdString(m_atlas.images[seg.image]).mid(4))),
                 qPrintable(result->imagePath));
        QCOMPARE(window.pyramidPanel()->level(), seg.level);
        const int node = result->pyramid.nodeOf(seg.level, seg.segment);
        QVERIFY(node >= 0);
        QCOMPARE(window.selectionModel()->selectedNode(), node);
        // The explorer's run of the image finds the same segment with the same size.
        QCOMPARE(result->pyramid.nodes[node].pixels, seg.pixels);
        QVERIFY(window.lastError().isEmpty());

        // The Pyramid view names that segment by its concept (nearest centre), renames included.
        auto* pyramid = window.pyramidPanel();
        QVERIFY(!pyramid->showsConcepts());
        pyramid->setShowConcepts(true);
        QVERIFY(pyramid->showsConcepts());
        QCOMPARE(pyramid->level(), m_atlas.level);
        QCOMPARE(pyramid->segmentConcepts().size(), result->pyramid.levels[seg.level - 1].nonEmpty.size());
        QCOMPARE(pyramid->conceptOfNode(node), QStringLiteral("concept %1").arg(seg.concept));
        QVERIFY(view->renameConcept(seg.concept, QStringLiteral("sleeve")));
        QCOMPARE(pyramid->conceptOfNode(node), QStringLiteral("sleeve"));
        QVERIFY2(pyramid->view()->caption().contains(QStringLiteral("sleeve")), qPrintable(pyramid->view()->caption()));
        // Every block of the segment is drawn in its concept's colour (the label is the concept id).
        const at::Tensor labels = pyramid->displayedLabels().flatten().contiguous();
        const auto mask = result->pyramid.blockMask(node);
        int blocks = 0;
        for (size_t i = 0; i < mask.size(); ++i)
            if (mask[i]) {
                QCOMPARE(labels[static_cast<int64_t>(i)].item<int>(), seg.concept);
                ++blocks;
            }
        QVERIFY(blocks > 0);

        // The Evidence view names the same segment's bar by its concept.
        window.showView(MainWindow::View::Evidence);
        QTRY_VERIFY_WITH_TIMEOUT(window.isViewUpToDate(), 30000);
        auto* evidence = window.evidenceView();
        QVERIFY(evidence->conceptsCheck()->isEnabled());
        evidence->setShowConcepts(true);
        QCOMPARE(evidence->level(), m_atlas.level);
        QVERIFY(evidence->showsConcepts());
        QCOMPARE(evidence->conceptOfSegment(seg.segment), QStringLiteral("sleeve"));
        const auto ranked = evidence->rankedSegments();
        const auto rank = std::find(ranked.begin(), ranked.end(), seg.segment) - ranked.begin();
        QVERIFY(rank < static_cast<std::ptrdiff_t>(ranked.size()));
        auto ticks = evidence->plot()->xAxis->ticker().dynamicCast<QCPAxisTickerText>();
        QVERIFY(ticks);
        QCOMPARE(ticks->ticks().value(static_cast<double>(rank + 1)), QStringLiteral("sleeve"));
        // An exported figure names the concepts: a concepts panel with a legend of concept names.
        {
            ConceptPanelRequest panel;
            panel.level = m_atlas.level;
            panel.segmentConcepts = pyramid->segmentConcepts();
            const auto atlas = view->atlas();
            for (int id = 0; id < static_cast<int>(atlas->concepts.size()); ++id)
                panel.names.push_back(QString::fromStdString(atlas->conceptLabel(id)));
            // The concept covering most of the image heads the legend.
            std::map<int, int> area;
            const at::Tensor shown = pyramid->displayedLabels().flatten().contiguous();
            for (int64_t i = 0; i < shown.numel(); ++i)
                if (const int c = shown[i].item<int>(); c >= 0)
                    ++area[c];
            const auto largest = std::max_element(area.begin(), area.end(),
                                                  [](const auto& a, const auto& b) { return a.second < b.second; });
            ExportRequest request;
            request.path = QDir(m_dir.path()).filePath(QStringLiteral("concepts_figure.svg"));
            request.levels = {m_atlas.level};
            request.concepts = panel;
            ExportDialog::exportTo(*result, QImage(), request);
            QFile file(request.path);
            QVERIFY(file.open(QIODevice::ReadOnly));
            const QByteArray svg = file.readAll();
            QCOMPARE(svg.count("<image"), 3);  // image, level, concepts
            QVERIFY(svg.contains(QStringLiteral("Concepts · level %1").arg(m_atlas.level).toUtf8()));
            QVERIFY2(svg.contains(panel.names[static_cast<size_t>(largest->first)].toUtf8()),
                     qPrintable(panel.names[static_cast<size_t>(largest->first)]));
            // A panel that does not fit the image is refused with a message naming the file.
            request.concepts->segmentConcepts.pop_back();
            bool refused = false;
            try {
                ExportDialog::exportTo(*result, QImage(), request);
            } catch (const std::runtime_error& e) {
                refused = QString::fromUtf8(e.what()).contains(QStringLiteral("concepts panel"));
            }
            QVERIFY(refused);
        }
        evidence->setShowConcepts(false);
        QVERIFY(!evidence->showsConcepts());
        QVERIFY(!evidence->plot()->xAxis->ticker().dynamicCast<QCPAxisTickerText>());
        QVERIFY(view->renameConcept(seg.concept, QString()));
    }

private:
    QString m_model;
    QTemporaryDir m_dir;
    QString m_atlasDir;
    fec::explain::Atlas m_atlas;
};

QTEST_MAIN(TestConceptsView)
#include "test_concepts_view.moc"
