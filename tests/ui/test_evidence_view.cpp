// The Evidence view: the class chooser follows the top-1 class, one bar per non-empty final
// segment, the logit shown is bias + the segments' contributions (and the model's own logit), a
// class change redraws the bars, and removing a segment shows the prediction the ablation engine
// computes, off the GUI thread. The exact report matches the engine's, the exported view carries
// its legend, and the ablation baseline (image mean, zero, dataset statistics) can be chosen.

#include <cmath>
#include <numeric>
#include <thread>
#include <vector>

#include <QComboBox>
#include <QSignalSpy>
#include <QStandardItemModel>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <ATen/ATen.h>

#include "explorer_fixture.h"
#include "fec/evidence.h"
#include "fec/explain/evidence_stats.h"
#include "fec/explain/segment_evidence.h"
#include "fec/file_hash.h"
#include "fec/imaging/render.h"
#include "fec/ui/evidence_view.h"
#include "fec/ui/export_dialog.h"
#include "fec/ui/image_view.h"
#include "fec/ui/model_session.h"
#include "fec/ui/qcustomplot_wrapper.h"
#include "fec/ui/selection_model.h"
#include "plot_values.h"

using namespace fec::ui;
using fec::test::barValues;

namespace {

// The Evidence chart's positive and negative bars; the mark and hover bars follow them.
constexpr int kContributionBars = 2;

// The bar values in rank order (positive and negative bars together).
}  // namespace

class TestEvidenceView : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        FEC_REQUIRE_FIXTURE("tiny_seed0.pth.tar");
        m_bundle = fec::test::loadBundle();
        m_result = fec::test::explain(*m_bundle);
        QVERIFY(m_result && m_result->evidence.contributions.defined());
        QVERIFY(m_result->top.size() >= 2);
        for (const auto& n : m_bundle->classNames)
            m_names << QString::fromStdString(n);
    }

    void cleanupTestCase()
    {
        for (auto& t : m_threads)
            t.join();
    }

    void defaultsToTopClassWithOneBarPerSegment()
    {
        SelectionModel selection;
        EvidenceView view(&selection);
        view.resize(1100, 700);
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        view.setClassNames(m_names);
        view.setResult(m_result);
        const int64_t top = m_result->top.front().index;
        QCOMPARE(view.targetClass(), top);
        QCOMPARE(view.classCombo()->currentIndex(), static_cast<int>(top));
        QCOMPARE(view.classCombo()->count(), static_cast<int>(m_result->evidence.contributions.size(1)));
        if (!m_names.isEmpty())
            QCOMPARE(view.classCombo()->currentText(), m_names[static_cast<int>(top)]);
        QCOMPARE(view.renderedRequestId(), m_result->requestId);
        QCOMPARE(view.renderedImage().size(), QSize(m_result->image.cols, m_result->image.rows));

        const auto& last = m_result->pyramid.levels.back();
        QCOMPARE(view.barCount(), static_cast<int>(last.nonEmpty.size()));
        const auto values = barValues(view.plot(), kContributionBars);
        QCOMPARE(values.size(), last.nonEmpty.size());
        QVERIFY(std::is_sorted(values.rbegin(), values.rend()));  // ranked, largest first
        QCOMPARE(values.front(), view.maps().segment[view.rankedSegments().front()]);
    }

    void logitIsBiasPlusContributions()
    {
        SelectionModel selection;
        EvidenceView view(&selection);
        view.show();
        view.setClassNames(m_names);
        view.setResult(m_result);
        const auto& maps = view.maps();
        const double sum = std::accumulate(maps.segment.begin(), maps.segment.end(), 0.0);
        QVERIFY(std::abs(maps.logit - (maps.bias + sum)) < 1e-4);
        const double modelLogit = m_result->trace.logits[0][view.targetClass()].item<double>();
        QVERIFY2(std::abs(maps.logit - modelLogit) < 1e-3, qPrintable(QString::number(maps.logit - modelLogit)));
        const QString text = view.summaryText();
        QVERIFY2(text.contains(QString::number(maps.logit, 'f', 3)), qPrintable(text));
        QVERIFY2(text.contains(QString::number(maps.bias, 'f', 3)), qPrintable(text));
        QVERIFY2(text.contains(QStringLiteral("not located in any pixel")), qPrintable(text));
    }

    void switchingClassChangesTheBars()
    {
        SelectionModel selection;
        EvidenceView view(&selection);
        view.show();
        view.setClassNames(m_names);
        view.setResult(m_result);
        const auto before = barValues(view.plot(), kContributionBars);
        const int64_t second = m_result->top[1].index;
        view.setTargetClass(second);
        QCOMPARE(view.targetClass(), second);
        QCOMPARE(view.classCombo()->currentIndex(), static_cast<int>(second));
        const auto after = barValues(view.plot(), kContributionBars);
        QCOMPARE(after.size(), before.size());
        QVERIFY(after != before);
        QVERIFY(std::abs(view.maps().logit - m_result->trace.logits[0][second].item<double>()) < 1e-3);

        // "versus": the bars split the difference of the two logits.
        view.setVersusClass(m_result->top.front().index);
        const auto logits = m_result->trace.logits[0];
        const double diff = (logits[second] - logits[m_result->top.front().index]).item<double>();
        QVERIFY(std::abs(view.maps().logit - diff) < 1e-3);
        QVERIFY(view.summaryText().contains(QStringLiteral("−")));

        // A class by name (as --class gives it), applied to the next result too.
        if (!m_names.isEmpty()) {
            EvidenceView named(&selection);
            named.setClassNames(m_names);
            QVERIFY(named.setTargetClassName(m_names[static_cast<int>(second)]));
            named.setResult(m_result);
            QCOMPARE(named.targetClass(), second);
            QVERIFY(!named.setTargetClassName(QStringLiteral("no such class at all")));
            QCOMPARE(named.targetClass(), m_result->top.front().index);  // falls back to top-1, says why
        }
    }

    void hoveringTheImageMarksTheBar()
    {
        SelectionModel selection;
        EvidenceView view(&selection);
        view.show();
        view.setResult(m_result);
        const int32_t segment = view.rankedSegments().front();
        selection.setHoveredNode(m_result->pyramid.nodeOf(m_result->pyramid.levelCount(), segment));
        auto* hover = qobject_cast<QCPBars*>(view.plot()->plottable(3));
        QCOMPARE(hover->data()->size(), 1);
        QCOMPARE(hover->data()->constBegin()->key, 1.0);
        QVERIFY(!view.view()->highlight().hoveredOutline.isEmpty());
    }

    void removingTheTopSegmentShowsTheAblatedPrediction()
    {
        SelectionModel selection;
        EvidenceView view(&selection);
        view.show();
        view.setClassNames(m_names);
        auto bundle = m_bundle;
        // The model runs on one other thread at a time, as the worker would run it.
        view.setModelRunner([this, bundle](EvidenceView::ModelTask task) {
            for (auto& t : m_threads)
                t.join();
            m_threads.clear();
            m_threads.emplace_back([bundle, task] { task(*bundle->loaded.model.ptr(), bundle->device); });
            return true;
        });
        view.setResult(m_result);
        const int64_t top = view.targetClass();
        const int32_t segment = view.rankedSegments().front();
        QSignalSpy spy(&view, &EvidenceView::interventionUpdated);
        view.toggleSegment(segment);
        QTRY_VERIFY_WITH_TIMEOUT(!view.interventionProbabilities().empty(), 20000);
        for (auto& t : m_threads)
            t.join();
        m_threads.clear();

        // What the engine says removing that segment does.
        fec::SegmentAblator ablator(*m_bundle->loaded.model.ptr(), m_result->prepared.tensor.unsqueeze(0),
                                    m_result->pyramid.levelCount(),
                                    std::vector<int32_t>(m_result->pyramid.levels.back().nonEmpty.begin(),
                                                         m_result->pyramid.levels.back().nonEmpty.end()));
        const at::Tensor expected = at::softmax(ablator.removing({segment}).to(at::kDouble), 0);
        const double base = view.baseProbabilities()[top];
        const double shown = view.interventionProbabilities()[top];
        const double engine = expected[top].item<double>();
        QVERIFY(std::abs(shown - engine) < 1e-5);
        QVERIFY(std::abs(shown - base) > 1e-9);
        QCOMPARE(shown > base, engine > base);
        QVERIFY2(view.interventionText().contains(QStringLiteral("Removing 1 segment")),
                 qPrintable(view.interventionText()));
        QVERIFY(view.interventionText().contains(view.classCombo()->itemText(static_cast<int>(top))));
        QCOMPARE(qobject_cast<QCPBars*>(view.plot()->plottable(2))->data()->size(), 1);  // marked bar

        view.resetIntervention();
        QVERIFY(view.interventionProbabilities().empty());
        QVERIFY(view.interventionSegments().empty());
        QCOMPARE(qobject_cast<QCPBars*>(view.plot()->plottable(2))->data()->size(), 0);

        // Interventions act on the level shown: two level-1 segments removed, as the engine says.
        view.setLevel(1);
        const auto& first = m_result->pyramid.levels.front();
        const std::vector<int32_t> two{first.nonEmpty[0], first.nonEmpty[first.nonEmpty.size() / 2]};
        view.toggleSegment(two[0]);
        view.toggleSegment(two[1]);
        QTRY_VERIFY_WITH_TIMEOUT(!view.interventionProbabilities().empty() &&
                                     view.interventionText().contains(QStringLiteral("2 segments of level 1")),
                                 20000);
        QTRY_VERIFY_WITH_TIMEOUT(!view.interventionText().contains(QStringLiteral("computing")), 20000);
        for (auto& t : m_threads)
            t.join();
        m_threads.clear();
        fec::SegmentAblator low(*m_bundle->loaded.model.ptr(), m_result->prepared.tensor.unsqueeze(0), 1,
                                std::vector<int32_t>(first.nonEmpty.begin(), first.nonEmpty.end()));
        const at::Tensor lowExpected = at::softmax(low.removing(two).to(at::kDouble), 0);
        QVERIFY(std::abs(view.interventionProbabilities()[top] - lowExpected[top].item<double>()) < 1e-5);
        // Another level starts from the whole image again.
        view.setLevel(m_result->pyramid.levelCount());
        QVERIFY(view.interventionSegments().empty());
        QVERIFY(view.interventionProbabilities().empty());
        for (auto& t : m_threads)
            t.join();
        m_threads.clear();
    }

    void lowerLevelsShowCachedAblationEffects()
    {
        SelectionModel selection;
        EvidenceView view(&selection);
        view.show();
        auto bundle = m_bundle;
        int tasks = 0;
        view.setModelRunner([this, bundle, &tasks](EvidenceView::ModelTask task) {
            ++tasks;
            for (auto& t : m_threads)
                t.join();
            m_threads.clear();
            m_threads.emplace_back([bundle, task] { task(*bundle->loaded.model.ptr(), bundle->device); });
            return true;
        });
        view.setResult(m_result);
        const int levels = m_result->pyramid.levelCount();
        QCOMPARE(view.level(), levels);
        view.setLevel(1);
        QCOMPARE(view.level(), 1);
        QVERIFY(view.isComputingEffects());
        QCOMPARE(view.barCount(), 0);
        QVERIFY(view.summaryText().contains(QStringLiteral("computing")));
        QTRY_VERIFY_WITH_TIMEOUT(!view.isComputingEffects(), 60000);
        const auto& lv = m_result->pyramid.levels[0];
        QCOMPARE(view.barCount(), static_cast<int>(lv.nonEmpty.size()));
        QVERIFY(view.summaryText().contains(QStringLiteral("effect of removing")));
        for (auto& t : m_threads)
            t.join();
        m_threads.clear();

        // The engine's effects for the same class.
        const std::vector<int32_t> segments(lv.nonEmpty.begin(), lv.nonEmpty.end());
        fec::SegmentAblator ablator(*m_bundle->loaded.model.ptr(), m_result->prepared.tensor.unsqueeze(0), 1, segments);
        const at::Tensor effects = ablator.singleEffects();
        for (size_t i = 0; i < segments.size(); ++i)
            QVERIFY(std::abs(view.segmentValues()[segments[i]] - effects[i][view.targetClass()].item<double>()) < 1e-4);

        // Cached per image and level, all classes at once: nothing runs again.
        const int ran = tasks;
        view.setLevel(levels);
        QCOMPARE(view.barCount(), static_cast<int>(m_result->pyramid.levels.back().nonEmpty.size()));
        view.setLevel(1);
        QVERIFY(!view.isComputingEffects());
        const auto before = barValues(view.plot(), kContributionBars);
        view.setTargetClass(m_result->top[1].index);
        QVERIFY(!view.isComputingEffects());
        QVERIFY(barValues(view.plot(), kContributionBars) != before);
        QCOMPARE(tasks, ran);
    }

    void cancellingEffectsShowsTheLastLevel()
    {
        SelectionModel selection;
        EvidenceView view(&selection);
        view.show();
        std::vector<EvidenceView::ModelTask> queued;
        view.setModelRunner([&queued](EvidenceView::ModelTask task) {
            queued.push_back(std::move(task));
            return true;
        });
        view.setResult(m_result);
        view.setLevel(1);
        QVERIFY(view.isComputingEffects());
        view.cancelEffects();
        QVERIFY(!view.isComputingEffects());
        QCOMPARE(view.level(), m_result->pyramid.levelCount());
        // The cancelled task, run late, delivers nothing.
        QCOMPARE(queued.size(), size_t(1));
        queued.front()(*m_bundle->loaded.model.ptr(), m_bundle->device);
        QTest::qWait(50);
        QCOMPARE(view.level(), m_result->pyramid.levelCount());
        QCOMPARE(view.barCount(), static_cast<int>(m_result->pyramid.levels.back().nonEmpty.size()));
    }

    // The window's path: tasks run on the session's worker thread; only the latest answer shows.
    void interventionsRunOnTheWorkerThread()
    {
        ModelSession session;
        QSignalSpy loaded(&session, &ModelSession::loaded);
        ModelLoadOptions options;
        options.path = fec::test::refPath("tiny_seed0.pth.tar");
        options.device = QStringLiteral("cpu");
        session.load(options);
        QVERIFY(loaded.wait(30000));
        SelectionModel selection;
        EvidenceView view(&selection);
        view.show();
        QThread* gui = QThread::currentThread();
        std::atomic<int> onGui{0};
        view.setModelRunner([&session, &onGui, gui](EvidenceView::ModelTask task) {
            return session.runOnModel([task, &onGui, gui](const ModelBundle& bundle) {
                if (QThread::currentThread() == gui)
                    ++onGui;
                task(*bundle.loaded.model.ptr(), bundle.device);
            });
        });
        view.setResult(m_result);
        const auto& ranked = view.rankedSegments();
        QVERIFY(ranked.size() >= 3);
        view.toggleSegment(ranked[0]);
        view.toggleSegment(ranked[1]);  // supersedes the first request
        QVERIFY(view.interventionText().contains(QStringLiteral("computing")));
        QTRY_VERIFY_WITH_TIMEOUT(!view.interventionProbabilities().empty(), 30000);
        QCOMPARE(onGui.load(), 0);
        QCOMPARE(view.interventionSegments().size(), size_t(2));
        QVERIFY2(view.interventionText().contains(QStringLiteral("Removing 2 segments")),
                 qPrintable(view.interventionText()));
        const auto removed = view.interventionProbabilities();

        view.setKeepOnly(true);  // keep only those two: another prediction
        QTRY_VERIFY_WITH_TIMEOUT(view.interventionText().contains(QStringLiteral("Keeping only 2 segments")) &&
                                     !view.interventionText().contains(QStringLiteral("…")),
                                 30000);
        QVERIFY(view.interventionProbabilities() != removed);
        const double sum =
            std::accumulate(view.interventionProbabilities().begin(), view.interventionProbabilities().end(), 0.0);
        QVERIFY(std::abs(sum - 1) < 1e-6);
        QTRY_VERIFY_WITH_TIMEOUT(!session.isBusy(), 10000);
    }

    void exactReportMatchesTheEngine()
    {
        const int64_t a = m_result->top[0].index, b = m_result->top[1].index;
        for (const int64_t versus : {int64_t(-1), b}) {
            fec::explain::EvidenceOptions options;
            options.target = a;
            options.versus = versus;
            options.ablation = false;
            const auto engine =
                fec::explain::segmentEvidence(*m_bundle->loaded.model.ptr(), c10::kCPU, *m_result, options);
            const auto exact = fec::explain::exactSegmentEvidence(*m_result, a, versus);
            QCOMPARE(exact.maps.logit, engine.maps.logit);
            QCOMPARE(exact.segments.size(), engine.segments.size());
            for (size_t i = 0; i < exact.segments.size(); ++i) {
                const auto &x = exact.segments[i], &y = engine.segments[i];
                QCOMPARE(x.level, y.level);
                QCOMPARE(x.segment, y.segment);
                QCOMPARE(x.node, y.node);
                QCOMPARE(x.pixels, y.pixels);
                QVERIFY(x.x0 == y.x0 && x.y0 == y.y0 && x.x1 == y.x1 && x.y1 == y.y1);
                QVERIFY2(std::abs(x.contribution - y.contribution) <= 1e-5 * std::max(1.0, std::abs(y.contribution)),
                         qPrintable(QString("level %1 segment %2: %3 vs %4")
                                        .arg(x.level)
                                        .arg(x.segment)
                                        .arg(x.contribution)
                                        .arg(y.contribution)));
                QVERIFY(std::isnan(x.effect));
            }
            QCOMPARE(cv::norm(exact.densityAtImage, engine.densityAtImage, cv::NORM_INF), 0.0);
        }
        QVERIFY_THROWS_EXCEPTION(
            std::out_of_range, fec::explain::exactSegmentEvidence(*m_result, m_result->evidence.contributions.size(1)));
    }

    void reportCarriesTheComputedEffects()
    {
        SelectionModel selection;
        EvidenceView view(&selection);
        view.show();
        view.setModelRunner(threadRunner());
        QVERIFY(!EvidenceView(&selection).report());  // no result: no report
        view.setResult(m_result);
        auto report = view.report();
        QVERIFY(report);
        QCOMPARE(report->maps.logit, view.maps().logit);
        for (const auto& s : report->segments)
            QVERIFY(std::isnan(s.effect));  // nothing ablated yet
        const int level = m_result->pyramid.levelCount() - 1;
        view.setLevel(level);
        QTRY_VERIFY_WITH_TIMEOUT(!view.isComputingEffects(), 60000);
        joinThreads();
        report = view.report();
        int withEffect = 0;
        for (const auto& s : report->segments) {
            QCOMPARE(std::isnan(s.effect), s.level != level);
            if (s.level == level) {
                QVERIFY(std::abs(s.effect - view.segmentValues()[s.segment]) < 1e-6);
                ++withEffect;
            }
        }
        QCOMPARE(withEffect,
                 static_cast<int>(m_result->pyramid.levels[static_cast<size_t>(level - 1)].nonEmpty.size()));
        QCOMPARE(view.className(view.targetClass()), view.classCombo()->currentText());
    }

    void exportedViewCarriesTheLegend()
    {
        SelectionModel selection;
        EvidenceView view(&selection);
        view.resize(1100, 700);
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        view.setResult(m_result);
        const QImage overlay = view.renderedImage();
        const QImage exported = view.exportImage();
        // Enlarged by a whole factor to at least 480 pixels wide.
        const int factor = overlay.width() >= 480 ? 1 : (480 + overlay.width() - 1) / overlay.width();
        QCOMPARE(exported.width(), overlay.width() * factor);
        const int pictureHeight = overlay.height() * factor;
        QVERIFY(exported.height() > pictureHeight + 40);
        // The scale's two ends, pure blue left of pure red, in the band under the picture.
        const auto near = [](QRgb p, double t) {
            const auto c = fec::imaging::divergingColour(t);
            return std::abs(qRed(p) - c[0]) + std::abs(qGreen(p) - c[1]) + std::abs(qBlue(p) - c[2]) <= 9;
        };
        int blueX = -1, redX = -1, dark = 0;
        for (int y = pictureHeight; y < exported.height(); ++y)
            for (int x = 0; x < exported.width(); ++x) {
                const QRgb p = exported.pixel(x, y);
                if (near(p, -1) && blueX < 0)
                    blueX = x;
                if (near(p, 1))
                    redX = x;
                dark += qGray(p) < 60;
            }
        QVERIFY2(blueX >= 0 && redX > blueX + exported.width() / 2, qPrintable(QString("%1 %2").arg(blueX).arg(redX)));
        QVERIFY(dark > 100);  // the caption and the values

        // "Current view" writes exactly that picture.
        QTemporaryDir dir;
        ExportRequest request;
        request.kind = ExportRequest::Kind::CurrentView;
        request.path = dir.filePath("evidence_view.png");
        ExportDialog::exportTo(*m_result, exported, request);
        const QImage file(request.path);
        QCOMPARE(file.size(), exported.size());
        QCOMPARE(file.pixel(redX, pictureHeight + 1), exported.pixel(redX, pictureHeight + 1));
        if (const QString shots = qEnvironmentVariable("FEC_VIEWS_SCREENSHOTS"); !shots.isEmpty())
            exported.save(QDir(shots).filePath("evidence_view_export.png"));
    }

    void baselineChoiceRecomputesTheEffects()
    {
        SelectionModel selection;
        EvidenceView view(&selection);
        view.show();
        int tasks = 0;
        view.setModelRunner(threadRunner(&tasks));
        view.setResult(m_result);
        QCOMPARE(view.baseline(), fec::AblationBaseline::Mean);
        auto* combo = view.baselineCombo();
        QCOMPARE(combo->count(), 3);
        QCOMPARE(combo->currentText(), QStringLiteral("image mean"));
        auto* items = qobject_cast<QStandardItemModel*>(combo->model());
        QVERIFY(items);
        // No statistics beside the model: "dataset" is offered disabled, saying how to make them.
        QVERIFY(!items->item(2)->isEnabled());
        QVERIFY2(items->item(2)->toolTip().contains("fec evidence-stats"), qPrintable(items->item(2)->toolTip()));
        QVERIFY(!view.setBaseline(fec::AblationBaseline::Dataset));
        QCOMPARE(view.baseline(), fec::AblationBaseline::Mean);

        // The level below the last (the one the figure's ablation panel shows): fewer segments, faster.
        const int level = m_result->pyramid.levelCount() - 1;
        const auto& lv = m_result->pyramid.levels[static_cast<size_t>(level - 1)];
        const std::vector<int32_t> segments(lv.nonEmpty.begin(), lv.nonEmpty.end());
        const auto waitForEffects = [&] {
            QTRY_VERIFY_WITH_TIMEOUT(!view.isComputingEffects() && view.barCount() > 0, 60000);
            joinThreads();
        };
        const auto expectEffects = [&](const fec::AblationOptions& options) {
            waitForEffects();
            fec::SegmentAblator ablator(*m_bundle->loaded.model.ptr(), m_result->prepared.tensor.unsqueeze(0), level,
                                        segments, options);
            const at::Tensor effects = ablator.singleEffects();
            for (size_t i = 0; i < segments.size(); ++i)
                QVERIFY(std::abs(view.segmentValues()[segments[i]] - effects[i][view.targetClass()].item<double>()) <
                        1e-4);
        };
        view.setLevel(level);
        waitForEffects();  // the image mean (lowerLevelsShowCachedAblationEffects checks its values)
        const auto meanValues = view.segmentValues();

        // Zero: the cache is dropped and the level recomputed in the worker.
        const int before = tasks;
        QVERIFY(view.setBaseline(fec::AblationBaseline::Zero));
        QCOMPARE(combo->currentText(), QStringLiteral("zero"));
        QVERIFY(view.isComputingEffects());
        QCOMPARE(tasks, before + 1);
        fec::AblationOptions zero;
        zero.baseline = fec::AblationBaseline::Zero;
        expectEffects(zero);
        QVERIFY(view.segmentValues() != meanValues);
        QVERIFY2(view.summaryText().contains("replaced by zero"), qPrintable(view.summaryText()));

        // Statistics beside (a copy of) the model: "dataset" becomes available and is used.
        QTemporaryDir dir;
        const QString checkpoint = dir.filePath("model.pth.tar");
        QVERIFY(QFile::copy(fec::test::refPath("tiny_seed0.pth.tar"), checkpoint));
        fec::explain::EvidenceStats stats;
        stats.modelSha1 = fec::fileSha1(checkpoint.toStdString());
        stats.data = "test";
        stats.inputSize = 224;
        stats.preprocess = "squash";
        stats.images = 1;
        const auto& dims = m_bundle->loaded.model->config().dims;
        for (size_t l = 1; l < dims.size(); ++l) {
            stats.positions.push_back(1);
            stats.levelMeans.push_back(at::linspace(-0.5, 0.5, dims[l]).to(at::kFloat));
        }
        view.setModelPath(checkpoint);
        QVERIFY(!items->item(2)->isEnabled());  // not written yet
        fec::explain::writeEvidenceStats(stats, fec::explain::evidenceStatsPathFor(checkpoint.toStdString()));
        view.setModelPath(checkpoint);
        QVERIFY(items->item(2)->isEnabled());
        QVERIFY2(items->item(2)->toolTip().contains("model.pth.tar.evidence-stats.json"),
                 qPrintable(items->item(2)->toolTip()));
        QVERIFY(view.setBaseline(fec::AblationBaseline::Dataset));
        fec::AblationOptions dataset;
        dataset.baseline = fec::AblationBaseline::Dataset;
        dataset.datasetMean = stats.levelMeans[static_cast<size_t>(level - 1)];
        expectEffects(dataset);

        // Interventions use the same baseline.
        view.setLevel(m_result->pyramid.levelCount());
        const int32_t segment = view.rankedSegments().front();
        view.toggleSegment(segment);
        QTRY_VERIFY_WITH_TIMEOUT(!view.interventionProbabilities().empty(), 20000);
        joinThreads();
        const auto& last = m_result->pyramid.levels.back();
        dataset.datasetMean = stats.levelMeans.back();
        fec::SegmentAblator ablator(*m_bundle->loaded.model.ptr(), m_result->prepared.tensor.unsqueeze(0),
                                    m_result->pyramid.levelCount(),
                                    std::vector<int32_t>(last.nonEmpty.begin(), last.nonEmpty.end()), dataset);
        const at::Tensor expected = at::softmax(ablator.removing({segment}).to(at::kDouble), 0);
        const int64_t top = view.targetClass();
        QVERIFY(std::abs(view.interventionProbabilities()[top] - expected[top].item<double>()) < 1e-5);

        // The statistics gone (another model): back to the image mean.
        view.setModelPath(QString());
        QCOMPARE(view.baseline(), fec::AblationBaseline::Mean);
        QVERIFY(!items->item(2)->isEnabled());
        joinThreads();
    }

private:
    // Runs each task on a new thread, one at a time, as the worker would run it.
    EvidenceView::ModelRunner threadRunner(int* tasks = nullptr)
    {
        auto bundle = m_bundle;
        return [this, bundle, tasks](EvidenceView::ModelTask task) {
            if (tasks)
                ++*tasks;
            joinThreads();
            m_threads.emplace_back([bundle, task] { task(*bundle->loaded.model.ptr(), bundle->device); });
            return true;
        };
    }
    void joinThreads()
    {
        for (auto& t : m_threads)
            t.join();
        m_threads.clear();
    }

    std::shared_ptr<ModelBundle> m_bundle;
    ExplainResultPtr m_result;
    QStringList m_names;
    std::vector<std::thread> m_threads;
};

QTEST_MAIN(TestEvidenceView)
#include "test_evidence_view.moc"
