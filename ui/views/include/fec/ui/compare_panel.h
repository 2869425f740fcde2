#pragma once

// Two to four synchronised panes, each showing any level, any encoding block and head, a K-means
// merge at any k, or a level of the same image under a second checkpoint; a difference mode marks
// the pixels whose segment changed between two panes (segments matched by overlap).

#include <vector>

#include <ATen/Tensor.h>

#include <QImage>
#include <QPointer>
#include <QWidget>

#include "fec/ui/explain_result.h"

class QCheckBox;
class QComboBox;
class QGridLayout;
class QLabel;
class QSlider;
class QSpinBox;

namespace fec::ui {

class ImageView;
class SelectionModel;
class ViewSync;

class ComparePanel : public QWidget {
    Q_OBJECT
public:
    struct Source {
        enum class Kind { Level, KMeans, EncodingHead, SecondModel } kind = Kind::Level;
        int level = 1;  ///< Level and SecondModel
        int k = 4;      ///< KMeans
        int block = 0;  ///< EncodingHead: index into ExplainResult::partitions
        int head = 0;   ///< EncodingHead
        bool operator==(const Source& o) const
        {
            return kind == o.kind && level == o.level && k == o.k && block == o.block && head == o.head;
        }
    };
    static constexpr int kMaxPanes = 4;

    explicit ComparePanel(SelectionModel* selection, QWidget* parent = nullptr);
    ~ComparePanel() override;

    void setResult(ExplainResultPtr result);
    /// The same image under the comparison checkpoint (nullptr: none loaded).
    void setSecondaryResult(ExplainResultPtr result);
    ExplainResultPtr result() const { return m_result; }
    ExplainResultPtr secondaryResult() const { return m_secondary; }

    void setPaneCount(int count);
    int paneCount() const { return m_count; }
    void setSource(int pane, const Source& source);
    Source source(int pane) const;
    ImageView* view(int pane) const;
    ViewSync* sync() const { return m_sync; }

    /// Difference between pane `a` (matched to) pane `b`, drawn over both.
    void setDifference(bool on, int a = 0, int b = 1);
    bool differenceShown() const { return m_diffOn; }
    /// Share of model-input pixels marked as changed (0 when off).
    double differenceFraction() const { return m_diffFraction; }
    /// The marked pixels, [S, S] kBool (undefined when off).
    at::Tensor differenceMask() const { return m_diffMask; }
    /// Labels a pane shows at model-input resolution, [S, S] int32.
    at::Tensor paneLabels(int pane) const;
    /// True when every shown pane has drawn the current result(s).
    bool isRendered() const;

protected:
    void showEvent(QShowEvent* event) override;
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    struct Pane;
    void buildPane(int index);
    void relayout();
    /// Places the shown panes in the grid whose columns show the picture largest.
    void arrangePanes(bool force = false);
    int bestColumns() const;
    void refreshSourceControls(int pane);
    void renderPane(int pane);
    void renderAll();
    void updateDifference();
    void updateHighlights();
    /// Labels at model-input resolution, their colours and the pane's caption.
    explain::Segmentation segmentationFor(const Source& source) const;
    int lookupNode(int pane, QPoint pixel) const;
    bool sourceAvailable(const Source& source) const;

    QPointer<SelectionModel> m_selection;
    ExplainResultPtr m_result;
    ExplainResultPtr m_secondary;
    std::vector<Pane*> m_panes;
    int m_count = 3;
    bool m_userChoseCount = false;
    ViewSync* m_sync = nullptr;
    QWidget* m_area = nullptr;
    QGridLayout* m_grid = nullptr;
    int m_columns = 0;
    QComboBox* m_countCombo = nullptr;
    QComboBox* m_modeCombo = nullptr;
    QSlider* m_opacitySlider = nullptr;
    QCheckBox* m_syncCheck = nullptr;
    QCheckBox* m_diffCheck = nullptr;
    QComboBox* m_diffA = nullptr;
    QComboBox* m_diffB = nullptr;
    QLabel* m_diffLabel = nullptr;
    bool m_diffOn = false;
    int m_diffPaneA = 0, m_diffPaneB = 1;
    double m_diffFraction = 0;
    at::Tensor m_diffMask;
    double m_opacity = 0.5;
    int m_mode = 2;
    bool m_dirty = false;
};

}  // namespace fec::ui
