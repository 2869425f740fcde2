// ExportDialog: figures and views in every format, data files with the right shapes, the same
// choices through the dialog, the evidence row of the figure, and readable failures.

#include <regex>

#include <QCheckBox>
#include <QDir>
#include <QFile>
#include <QImage>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLineEdit>
#include <QPushButton>
#include <QStandardPaths>
#include <QSet>
#include <QTemporaryDir>
#include <QTest>

#include "fec/checkpoint.h"
#include "fec/evidence.h"
#include "fec/explain/segment_evidence.h"
#include "fec/tensor_io.h"
#include "fec/ui/export_dialog.h"
#include "views_fixture.h"

using namespace fec;
using fec::ui::ExportDialog;
using fec::ui::ExportRequest;

namespace {

QByteArray readAll(const QString& path)
{
    QFile file(path);
    return file.open(QIODevice::ReadOnly) ? file.readAll() : QByteArray();
}

// Height of the page of a one-page PDF (its MediaBox), in points.
double pdfPageHeight(const QByteArray& pdf)
{
    const std::string text = pdf.toStdString();
    std::smatch m;
    static const std::regex box(R"(/MediaBox\s*\[\s*[-0-9.]+\s+[-0-9.]+\s+([-0-9.]+)\s+([-0-9.]+)\s*\])");
    return std::regex_search(text, m, box) ? std::stod(m[2].str()) : 0;
}

QImage someView()
{
    QImage image(320, 200, QImage::Format_RGB32);
    for (int y = 0; y < image.height(); ++y)
        for (int x = 0; x < image.width(); ++x)
            image.setPixel(x, y, qRgb(x % 256, y, (x + y) % 256));
    return image;
}

}  // namespace

class TestExportDialog : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        if (!test::viewFixturesPresent())
            QSKIP("reference fixtures not found: set FEC_REFERENCE_DIR to the folder with tiny_seed0.pth.tar");
        QStandardPaths::setTestModeEnabled(true);  // the dialog remembers its folder in QSettings
        m_result = test::makeExplainResult();
        QVERIFY(m_result->merger->maxK() >= 5);
        // The same result with its evidence, as a classification model's explanation carries it.
        m_loaded = std::make_shared<LoadedModel>(loadCheckpoint(test::referencePath("tiny_seed0.pth.tar")));
        auto withEvidence = std::make_shared<ui::ExplainResult>(*m_result);
        withEvidence->evidence = computeEvidence(*m_loaded->model, m_result->trace.finalMap);
        withEvidence->top = topClasses(m_result->trace.logits[0], 5);
        for (const auto& c : withEvidence->top)
            withEvidence->topClasses.emplace_back(QStringLiteral("class-%1").arg(c.index), c.probability);
        m_evidenceResult = withEvidence;
    }

    void figureWithEvidenceRowHasOneMoreRow_data()
    {
        QTest::addColumn<QString>("format");
        QTest::newRow("png") << "png";
        QTest::newRow("svg") << "svg";
        QTest::newRow("pdf") << "pdf";
    }

    void figureWithEvidenceRowHasOneMoreRow()
    {
        QFETCH(QString, format);
        QTemporaryDir dir;
        ExportRequest request;
        request.path = dir.filePath("plain." + format);
        request.dpi = 100;
        request.levels = {1, 3};
        request.ks = {3};
        ExportDialog::exportTo(*m_evidenceResult, QImage(), request);
        const QByteArray plain = readAll(request.path);

        // No report given: the exact part is computed from the result (three panels, no ablation).
        ui::EvidenceRowRequest row;
        row.target = m_evidenceResult->top.front().index;
        row.className = QStringLiteral("Tabby");
        request.evidence = row;
        request.path = dir.filePath("evidence." + format);
        QStringList steps;
        ExportDialog::exportTo(*m_evidenceResult, QImage(), request, [&steps](int, int, const QString& step) {
            steps << step;
            return true;
        });
        QVERIFY2(steps.join('|').contains("Drawing the evidence for Tabby"), qPrintable(steps.join('|')));
        const QByteArray withRow = readAll(request.path);
        if (format == "png") {
            QImage a, b;
            QVERIFY(a.loadFromData(plain, "PNG"));
            QVERIFY(b.loadFromData(withRow, "PNG"));
            QCOMPARE(b.width(), a.width());  // 4 panels in both rows: as wide
            // Two rows of panels and a legend: about twice as tall.
            QVERIFY2(b.height() > 1.8 * a.height(), qPrintable(QString("%1 vs %2").arg(b.height()).arg(a.height())));
        } else if (format == "svg") {
            QCOMPARE(plain.count("<image"), 4);
            QCOMPARE(withRow.count("<image"), 4 + 3);  // image, segments, density
            const int levels = m_evidenceResult->pyramid.levelCount();
            for (const QString& text :
                 {QString("Image · logit Tabby = "), QString("Level %1 segments (±").arg(levels),
                  QString("Density per pixel (±"), QString("+range: for Tabby"), QString("−range: against Tabby"),
                  QString("0 (no evidence)"), QString(">Evidence<")})
                QVERIFY2(withRow.contains(text.toUtf8()), qPrintable(text));
            QVERIFY(!withRow.contains("ablation effects"));
        } else {
            QVERIFY(withRow.startsWith("%PDF"));
            const double a = pdfPageHeight(plain), b = pdfPageHeight(withRow);
            QVERIFY(a > 0);
            QVERIFY2(b > 1.8 * a, qPrintable(QString("%1 vs %2 pt").arg(b).arg(a)));
        }
    }

    void evidenceRowFromAReportShowsItsAblationAndContrast()
    {
        const int64_t a = m_evidenceResult->top[0].index, b = m_evidenceResult->top[1].index;
        explain::EvidenceOptions options;
        options.target = a;
        options.versus = b;
        auto report = std::make_shared<const explain::EvidenceReport>(
            explain::segmentEvidence(*m_loaded->model, c10::kCPU, *m_evidenceResult, options));
        QTemporaryDir dir;
        ExportRequest request;
        request.path = dir.filePath("contrast.svg");
        request.levels = {1};
        request.evidence = ui::EvidenceRowRequest{a, b, QStringLiteral("Tabby"), QStringLiteral("Lynx"), report};
        ExportDialog::exportTo(*m_evidenceResult, QImage(), request);
        const QByteArray svg = readAll(request.path);
        QCOMPARE(svg.count("<image"), 2 + 4);  // image + level 1; image, segments, density, ablation
        const int below = m_evidenceResult->pyramid.levelCount() - 1;
        QVERIFY(svg.contains(QString("Level %1 ablation effects (±").arg(below).toUtf8()));
        QVERIFY(svg.contains(QString("logit Tabby vs Lynx = %1").arg(report->maps.logit, 0, 'f', 3).toUtf8()));
        if (const QString shots = qEnvironmentVariable("FEC_VIEWS_SCREENSHOTS"); !shots.isEmpty()) {
            request.path = QDir(shots).filePath("export_evidence_figure.png");
            request.levels = {1, 2, 3};
            request.ks = {3};
            request.evidence->versus = -1;
            request.evidence->versusName.clear();
            options.versus = -1;
            request.evidence->report = std::make_shared<const explain::EvidenceReport>(
                explain::segmentEvidence(*m_loaded->model, c10::kCPU, *m_evidenceResult, options));
            ExportDialog::exportTo(*m_evidenceResult, QImage(), request);
        }
    }

    void evidenceRowRefusedWithoutEvidenceOrForABadClass()
    {
        QTemporaryDir dir;
        ExportRequest request;
        request.path = dir.filePath("refused.png");
        request.levels = {1};
        request.evidence = ui::EvidenceRowRequest{};
        try {
            ExportDialog::exportTo(*m_result, QImage(), request);  // a result without evidence
            QFAIL("a figure with an evidence row needs evidence");
        } catch (const std::runtime_error& e) {
            QVERIFY2(QString(e.what()).contains("refused.png") && QString(e.what()).contains("classifier head"),
                     e.what());
        }
        const int64_t classes = m_evidenceResult->evidence.contributions.size(1);
        request.evidence->target = classes;
        try {
            ExportDialog::exportTo(*m_evidenceResult, QImage(), request);
            QFAIL("a class out of range must be refused");
        } catch (const std::runtime_error& e) {
            QVERIFY2(QString(e.what()).contains(QString("0 to %1").arg(classes - 1)), e.what());
        }
        QVERIFY(!QFile::exists(request.path));
    }

    void dialogOffersTheEvidenceRow()
    {
        const auto evidenceBox = [](ExportDialog& dialog) -> QCheckBox* {
            for (auto* box : dialog.findChildren<QCheckBox*>())
                if (box->text().remove('&').startsWith("Evidence row"))
                    return box;
            return nullptr;
        };
        {
            // A backbone's result: nothing to offer.
            ExportDialog dialog(m_result, someView());
            QCheckBox* box = evidenceBox(dialog);
            QVERIFY(box);
            QVERIFY(!box->isEnabled());
            QVERIFY(!dialog.request().evidence);
        }
        ExportDialog dialog(m_evidenceResult, someView());
        QCheckBox* box = evidenceBox(dialog);
        QVERIFY(box);
        // By itself the dialog offers the top-1 class, unchecked.
        QVERIFY(box->isEnabled());
        QVERIFY(!box->isChecked());
        QVERIFY2(box->text().contains(m_evidenceResult->topClasses.front().first), qPrintable(box->text()));
        QVERIFY(!dialog.request().evidence);
        box->setChecked(true);
        QCOMPARE(dialog.request().evidence->target, m_evidenceResult->top.front().index);
        QVERIFY(!dialog.request().evidence->report);

        // The Evidence view's choice: checked, with its report.
        ui::EvidenceRowRequest row;
        row.target = m_evidenceResult->top[1].index;
        row.versus = m_evidenceResult->top[0].index;
        row.className = QStringLiteral("Lynx");
        row.versusName = QStringLiteral("Tabby");
        row.report = std::make_shared<const explain::EvidenceReport>();
        dialog.offerEvidenceRow(row, true);
        QVERIFY(box->isChecked());
        QVERIFY2(box->text().contains("Lynx") && box->text().contains("Tabby"), qPrintable(box->text()));
        const auto chosen = dialog.request().evidence;
        QVERIFY(chosen);
        QCOMPARE(chosen->target, row.target);
        QCOMPARE(chosen->versus, row.versus);
        QCOMPARE(chosen->report, row.report);
        box->setChecked(false);
        QVERIFY(!dialog.request().evidence);

        // Round trip through setRequest.
        ExportRequest request = dialog.request();
        request.evidence = row;
        dialog.setRequest(request);
        QVERIFY(box->isChecked());
        QCOMPARE(dialog.request().evidence->target, row.target);
        request.evidence.reset();
        dialog.setRequest(request);
        QVERIFY(!box->isChecked());
    }

    void figureInEveryFormat_data()
    {
        QTest::addColumn<QString>("format");
        QTest::newRow("png") << "png";
        QTest::newRow("svg") << "svg";
        QTest::newRow("pdf") << "pdf";
    }

    void figureInEveryFormat()
    {
        QFETCH(QString, format);
        QTemporaryDir dir;
        ExportRequest request;
        request.kind = ExportRequest::Kind::Figure;
        request.path = dir.filePath("figure." + format);
        request.dpi = 100;
        request.levels = {1, 3};
        request.ks = {3, 5};
        ExportDialog::exportTo(*m_result, QImage(), request);
        const QByteArray bytes = readAll(request.path);
        QVERIFY(!bytes.isEmpty());
        if (format == "png") {
            QImage image;
            QVERIFY(image.loadFromData(bytes, "PNG"));
            // Five panels in a row, wider than tall.
            QVERIFY(image.width() > 2 * image.height());
        } else if (format == "svg") {
            QCOMPARE(bytes.count("<image"), 1 + 2 + 2);  // image, 2 levels, 2 merges
            QVERIFY(bytes.contains("Level 1 · "));
            QVERIFY(bytes.contains("K-means k = 5"));
            QVERIFY(bytes.contains("chelsea.png"));
        } else {
            QVERIFY(bytes.startsWith("%PDF"));
            QVERIFY(bytes.contains("%%EOF"));
        }
        // Only the figure: no data unless asked.
        QCOMPARE(QDir(dir.path()).entryList(QDir::Files), QStringList{"figure." + format});
        if (const QString shots = qEnvironmentVariable("FEC_VIEWS_SCREENSHOTS"); !shots.isEmpty()) {
            QFile::remove(QDir(shots).filePath("export_figure." + format));
            QFile::copy(request.path, QDir(shots).filePath("export_figure." + format));
        }
    }

    void panelTitlesMatchTheCli()
    {
        QTemporaryDir dir;
        ExportRequest request;
        request.path = dir.filePath("titles.svg");
        request.levels = {1, 2, 3};
        ExportDialog::exportTo(*m_result, QImage(), request);
        const QByteArray svg = readAll(request.path);
        for (int l = 1; l <= 3; ++l) {
            const auto& lv = m_result->pyramid.levels[l - 1];
            const QString title = QString("Level %1 · %2 clusters").arg(l).arg(lv.nonEmpty.size()) +
                                  (lv.emptyCount() ? QString(" (%1 empty)").arg(lv.emptyCount()) : QString());
            QVERIFY2(svg.contains(title.toUtf8()), qPrintable(title));
        }
    }

    void dataFilesHaveTheRightShapes()
    {
        QTemporaryDir dir;
        ExportRequest request;
        request.path = dir.filePath("with-data.png");
        request.dpi = 72;
        request.levels = {2};
        request.ks = {3, 4};
        request.writeData = true;
        QStringList steps;
        const QStringList written =
            ExportDialog::exportTo(*m_result, QImage(), request, [&steps](int, int, const QString& step) {
                steps << step;
                return true;
            });
        QCOMPARE(written.size(), 1 + 1 + 2 + 1);
        QCOMPARE(written.first(), request.path);
        QVERIFY(steps.size() >= 5);

        const auto& pyramid = m_result->pyramid;
        const auto levels = loadNpy(dir.filePath("levels.npy").toStdString());
        QCOMPARE(levels.scalar_type(), at::kInt);
        QCOMPARE(levels.sizes().vec(), (std::vector<int64_t>{pyramid.levelCount(), 224, 224}));
        QVERIFY(levels.equal(pyramid.allPixelLabels()));
        for (int k : {3, 4}) {
            const auto labels = loadNpy(dir.filePath(QString("kmeans_k%1.npy").arg(k)).toStdString());
            QCOMPARE(labels.scalar_type(), at::kInt);
            QCOMPARE(labels.sizes().vec(), (std::vector<int64_t>{224, 224}));
            QCOMPARE(labels.max().item<int>(), k - 1);
            QCOMPARE(labels.min().item<int>(), 0);
        }
        const auto json = QJsonDocument::fromJson(readAll(dir.filePath("hierarchy.json")));
        QVERIFY(json.isObject());
        QCOMPARE(json.object().value("nodes").toArray().size(), static_cast<int>(pyramid.nodes.size()));
        QCOMPARE(json.object().value("levels").toArray().size(), pyramid.levelCount());
    }

    void currentViewInEveryFormat()
    {
        QTemporaryDir dir;
        const QImage view = someView();
        ExportRequest request;
        request.kind = ExportRequest::Kind::CurrentView;
        request.dpi = 150;
        request.path = dir.filePath("view.png");
        ExportDialog::exportTo(*m_result, view, request);
        const QImage png(request.path);
        QCOMPARE(png.size(), view.size());
        QCOMPARE(qRound(png.dotsPerMeterX() * 0.0254), 150);
        QCOMPARE(png.pixel(10, 20), view.pixel(10, 20));

        request.path = dir.filePath("view.svg");
        ExportDialog::exportTo(*m_result, view, request);
        QCOMPARE(readAll(request.path).count("<image"), 1);

        request.path = dir.filePath("view.pdf");
        ExportDialog::exportTo(*m_result, view, request);
        QVERIFY(readAll(request.path).startsWith("%PDF"));

        request.path = dir.filePath("none.png");
        QVERIFY_THROWS_EXCEPTION(std::runtime_error, ExportDialog::exportTo(*m_result, QImage(), request));
    }

    void badRequestsThrowNamingTheFile_data()
    {
        QTest::addColumn<QString>("name");
        QTest::addColumn<std::vector<int>>("levels");
        QTest::addColumn<std::vector<int>>("ks");
        QTest::newRow("extension") << "figure.bmp" << std::vector<int>{1} << std::vector<int>{};
        QTest::newRow("level 0") << "figure.png" << std::vector<int>{0} << std::vector<int>{};
        QTest::newRow("level too high") << "figure.png" << std::vector<int>{99} << std::vector<int>{};
        QTest::newRow("k 1") << "figure.png" << std::vector<int>{1} << std::vector<int>{1};
        QTest::newRow("k too high") << "figure.png" << std::vector<int>{1} << std::vector<int>{100000};
        QTest::newRow("missing folder") << "missing/figure.png" << std::vector<int>{1} << std::vector<int>{};
    }

    void badRequestsThrowNamingTheFile()
    {
        QFETCH(QString, name);
        QFETCH(std::vector<int>, levels);
        QFETCH(std::vector<int>, ks);
        QTemporaryDir dir;
        ExportRequest request;
        request.path = dir.filePath(name);
        request.levels = levels;
        request.ks = ks;
        try {
            ExportDialog::exportTo(*m_result, QImage(), request);
            QFAIL("the request must be refused");
        } catch (const std::runtime_error& e) {
            QVERIFY2(QString(e.what()).contains(name), e.what());
        }
        QVERIFY(!QFile::exists(request.path));
    }

    void cancellingStopsTheExport()
    {
        QTemporaryDir dir;
        ExportRequest request;
        request.path = dir.filePath("cancelled.png");
        request.levels = {1, 2, 3};
        int calls = 0;
        const QStringList written = ExportDialog::exportTo(*m_result, QImage(), request,
                                                           [&calls](int, int, const QString&) { return ++calls < 2; });
        QVERIFY(written.isEmpty());
        QVERIFY(!QFile::exists(request.path));
    }

    void parseKsValidatesAgainstMaxK()
    {
        QString error;
        QCOMPARE(ExportDialog::parseKs("3,5", 10, &error), (std::vector<int>{3, 5}));
        QVERIFY(error.isEmpty());
        QCOMPARE(ExportDialog::parseKs(" 2 , 10 ,2", 10, &error), (std::vector<int>{2, 10}));
        QVERIFY(ExportDialog::parseKs("", 10, &error).empty());
        QVERIFY(error.isEmpty());
        QVERIFY(ExportDialog::parseKs("1", 10, &error).empty());
        QVERIFY(error.contains("2 to 10"));
        QVERIFY(ExportDialog::parseKs("11", 10, &error).empty());
        QVERIFY(error.contains("11"));
        QVERIFY(ExportDialog::parseKs("3,x", 10, &error).empty());
        QVERIFY(error.contains("'x'"));
    }

    void dialogRoundTripsAndExports()
    {
        QTemporaryDir dir;
        ExportDialog dialog(m_result, someView());
        // Defaults: a figure named after the image, every level, k = 3,5.
        const ExportRequest defaults = dialog.request();
        QCOMPARE(defaults.kind, ExportRequest::Kind::Figure);
        QVERIFY(defaults.path.endsWith("chelsea_fec_figure.png"));
        QCOMPARE(static_cast<int>(defaults.levels.size()), m_result->pyramid.levelCount());
        QCOMPARE(defaults.ks, (std::vector<int>{3, 5}));

        ExportRequest request;
        request.kind = ExportRequest::Kind::Figure;
        request.path = dir.filePath("dialog.svg");
        request.dpi = 120;
        request.levels = {2, 3};
        request.ks = {4};
        request.writeData = true;
        dialog.setRequest(request);
        const ExportRequest back = dialog.request();
        QCOMPARE(back.path, request.path);
        QCOMPARE(back.dpi, 120);
        QCOMPARE(back.levels, request.levels);
        QCOMPARE(back.ks, request.ks);
        QVERIFY(back.writeData);

        // An invalid k disables the Export button and explains why.
        const auto edits = dialog.findChildren<QLineEdit*>();
        QLineEdit* kEdit = nullptr;
        for (auto* e : edits)
            if (e->text() == "4")
                kEdit = e;
        QVERIFY(kEdit);
        QPushButton* exportButton = nullptr;
        for (auto* b : dialog.findChildren<QPushButton*>())
            if (b->text().remove('&') == "Export")
                exportButton = b;
        QVERIFY(exportButton);
        kEdit->setText("1");
        QVERIFY(!exportButton->isEnabled());
        kEdit->setText("4");
        QVERIFY(exportButton->isEnabled());

        dialog.accept();
        QCOMPARE(dialog.result(), int(QDialog::Accepted));
        QCOMPARE(readAll(request.path).count("<image"), 1 + 2 + 1);
        QVERIFY(QFile::exists(dir.filePath("levels.npy")));
        QVERIFY(QFile::exists(dir.filePath("kmeans_k4.npy")));
        QVERIFY(QFile::exists(dir.filePath("hierarchy.json")));
    }

    // The dialog draws (every panel choice visible); FEC_VIEWS_SCREENSHOTS keeps the picture.
    void dialogDraws()
    {
        QTemporaryDir temp;
        const QString shots = qEnvironmentVariableIsEmpty("FEC_VIEWS_SCREENSHOTS")
                                  ? temp.path()
                                  : qEnvironmentVariable("FEC_VIEWS_SCREENSHOTS");
        ExportDialog dialog(m_result, someView());
        dialog.show();
        QVERIFY(QTest::qWaitForWindowExposed(&dialog));
        const QImage picture = dialog.grab().toImage();
        QVERIFY(picture.width() > 300 && picture.height() > 200);
        QSet<QRgb> colours;
        for (int y = 0; y < picture.height(); y += 2)
            for (int x = 0; x < picture.width(); x += 2)
                colours.insert(picture.pixel(x, y));
        QVERIFY2(colours.size() > 20, "the dialog drew next to nothing");
        QVERIFY(picture.save(QDir(shots).filePath("export_dialog.png")));
    }

private:
    ui::ExplainResultPtr m_result;
    ui::ExplainResultPtr m_evidenceResult;
    std::shared_ptr<LoadedModel> m_loaded;
};

QTEST_MAIN(TestExportDialog)
#include "test_views_export.moc"
