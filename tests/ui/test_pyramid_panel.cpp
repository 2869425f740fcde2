// The pyramid panel: the level selector and the live K-means slider show exactly the labels the
// engine computed (levels, merge(k) for every k), with colours that follow ClusterMerger.

#include <QButtonGroup>
#include <QCheckBox>
#include <QSignalSpy>
#include <QSlider>
#include <QtTest/QtTest>

#include <ATen/ATen.h>

#include "explorer_fixture.h"
#include "fec/imaging/kmeans.h"
#include "fec/ui/image_view.h"
#include "fec/ui/pyramid_panel.h"
#include "fec/ui/selection_model.h"

using namespace fec::ui;

class TestPyramidPanel : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        FEC_REQUIRE_FIXTURE("tiny_seed0.pth.tar");
        m_result = fec::test::explain(*fec::test::loadBundle());
        QVERIFY(m_result && m_result->merger);
    }

    void showsEachLevel()
    {
        SelectionModel selection;
        PyramidPanel panel(&selection);
        panel.resize(900, 600);
        panel.show();
        QVERIFY(QTest::qWaitForWindowExposed(&panel));
        panel.setResult(m_result);
        QCOMPARE(panel.renderedRequestId(), m_result->requestId);
        QCOMPARE(panel.renderedImage().size(), QSize(451, 300));
        QImage previous;
        for (int level = 1; level <= m_result->pyramid.levelCount(); ++level) {
            panel.setLevel(level);
            QCOMPARE(panel.level(), level);
            QVERIFY(at::equal(panel.displayedLabels(), m_result->pyramid.blockLabels(level)));
            QVERIFY(panel.renderedImage() != previous);
            previous = panel.renderedImage();
            QVERIFY(panel.view()->caption().contains(QStringLiteral("Level %1").arg(level)));
        }
    }

    void kmeansSliderShowsMergeOfK()
    {
        SelectionModel selection;
        PyramidPanel panel(&selection);
        panel.resize(900, 600);
        panel.show();
        QVERIFY(QTest::qWaitForWindowExposed(&panel));
        panel.setResult(m_result);
        auto* slider = panel.kSlider();
        const int maxK = m_result->merger->maxK();
        QCOMPARE(slider->maximum(), maxK);
        QCOMPARE(slider->minimum(), 2);
        QSignalSpy rendered(&panel, &PyramidPanel::rendered);
        panel.setKMeans(true);
        QVERIFY(slider->isEnabled());
        QImage previous = panel.renderedImage();
        const int last = std::min(maxK, 12);
        for (int k = 2; k <= last; ++k) {
            slider->setValue(k);
            QCOMPARE(panel.k(), k);
            const auto& merge = m_result->merger->merge(k);
            const auto expected = m_result->merger->blockLabels(merge);
            QVERIFY2(at::equal(panel.displayedLabels(), expected), qPrintable(QStringLiteral("k = %1").arg(k)));
            // k distinct groups on screen.
            QCOMPARE(std::get<0>(at::_unique(panel.displayedLabels())).numel(), k);
            QVERIFY(panel.view()->caption().contains(QStringLiteral("k = %1").arg(k)));
            if (k > 2)
                QVERIFY(panel.renderedImage() != previous);
            previous = panel.renderedImage();
        }
        QVERIFY(rendered.size() >= last - 1);
        // Keyboard on the slider steps k by one.
        slider->setValue(3);
        slider->setFocus();
        QTest::keyClick(slider, Qt::Key_Right);
        QCOMPARE(panel.k(), 4);
        // Going back to a level leaves K-means mode.
        panel.setLevel(2);
        QVERIFY(!panel.isKMeans());
        QVERIFY(at::equal(panel.displayedLabels(), m_result->pyramid.blockLabels(2)));
    }

    void styleControlsChangeTheOverlay()
    {
        SelectionModel selection;
        PyramidPanel panel(&selection);
        panel.resize(900, 600);
        panel.show();
        QVERIFY(QTest::qWaitForWindowExposed(&panel));
        panel.setResult(m_result);
        const QImage both = panel.renderedImage();
        panel.setDisplayMode(PyramidPanel::DisplayMode::Outline);
        const QImage outline = panel.renderedImage();
        QVERIFY(outline != both);
        panel.setDisplayMode(PyramidPanel::DisplayMode::Fill);
        panel.setOpacity(0.0);
        // Zero opacity, no outline: the photo itself.
        const QImage photo = panel.renderedImage().convertToFormat(QImage::Format_RGB888);
        const QImage original(fec::test::chelseaPath());
        QCOMPARE(photo.pixelColor(100, 100), original.convertToFormat(QImage::Format_RGB888).pixelColor(100, 100));
        panel.setOpacity(0.5);
        const QImage plain = panel.renderedImage();
        panel.setMedianFilter(true);
        QVERIFY(panel.renderedImage() != plain);
    }

    void highlightFollowsTheSelection()
    {
        SelectionModel selection;
        PyramidPanel panel(&selection);
        panel.resize(900, 600);
        panel.show();
        QVERIFY(QTest::qWaitForWindowExposed(&panel));
        panel.setResult(m_result);
        const int node = m_result->pyramid.levelNodes[1][3];
        selection.setSelectedNode(node);
        QCOMPARE(panel.view()->highlight().selectedMask, m_result->pyramid.blockMask(node));
        QVERIFY(!panel.view()->highlight().ancestorOutlines.empty());
        selection.setSelectedNode(-1);
        QVERIFY(panel.view()->highlight().selectedMask.empty());
    }

private:
    ExplainResultPtr m_result;
};

QTEST_MAIN(TestPyramidPanel)
#include "test_pyramid_panel.moc"
