#pragma once

// Export dialog: the current view as an image, or a paper-style figure (image, chosen levels,
// K-means merges, optionally a row with the segment evidence of one class) as PNG/SVG/PDF at a
// chosen DPI; optional data files. Uses the same imaging and figure code as `fec explain`, so the
// GUI and the CLI produce the same files.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include <QDialog>
#include <QImage>
#include <QStringList>

#include "fec/ui/explain_result.h"

namespace fec::explain {
struct EvidenceReport;
}

namespace fec::ui {

/// The evidence row of a paper figure (figure::evidenceRow): one class, or "class versus class".
struct EvidenceRowRequest {
    int64_t target = 0;   ///< class index
    int64_t versus = -1;  ///< contrast class, or -1
    QString className;    ///< as the panel titles name the class
    QString versusName;   ///< empty without a contrast
    /// The report for target/versus, e.g. the Evidence view's (with the ablation effects it has
    /// computed). Null: the export computes the exact part from the result (no ablation panel).
    std::shared_ptr<const explain::EvidenceReport> report;
};

/// A panel of a paper figure with the atlas concepts of one pyramid level: every segment of the
/// level in its concept's colour (the same colours as the Pyramid view's Concepts toggle), with
/// the concepts' names in the legend.
struct ConceptPanelRequest {
    int level = 0;                         ///< the atlas's level
    std::vector<int32_t> segmentConcepts;  ///< concept of each non-empty segment of `level`
                                           ///< (nonEmpty order, explain::segmentConcepts)
    std::vector<QString> names;            ///< per concept id (explain::Atlas::conceptLabel)
};

struct ExportRequest {
    enum class Kind { CurrentView, Figure } kind = Kind::Figure;
    QString path;  ///< file to write; format from its extension (.png/.svg/.pdf)
    int dpi = 300;
    std::vector<int> levels;  ///< 1-based levels for the figure
    std::vector<int> ks;      ///< K-means k values for the figure
    bool writeData = false;   ///< also levels.npy, kmeans_k<k>.npy, hierarchy.json beside the file
    /// Figure only: a second row with the evidence (none when empty).
    std::optional<EvidenceRowRequest> evidence;
    /// Figure only: one more panel in the image's row with the atlas concepts (none when empty).
    std::optional<ConceptPanelRequest> concepts;
};

/// Progress of an export: `done` of `total` steps, the step starting now; return false to cancel.
using ExportProgress = std::function<bool(int done, int total, const QString& step)>;

class ExportDialog : public QDialog {
    Q_OBJECT
public:
    /// `currentView` is what "current view" exports.
    ExportDialog(ExplainResultPtr result, QImage currentView, QWidget* parent = nullptr);
    ~ExportDialog() override;

    /// The choices as they stand in the dialog (tests set them through setRequest).
    ExportRequest request() const;
    void setRequest(const ExportRequest& request);

    /// Offers the evidence row in the figure (the "Evidence row (class …)" check box), checked or
    /// not. Without an offer the dialog offers the result's top-1 class, unchecked; a result
    /// without evidence (a backbone) offers none.
    void offerEvidenceRow(const EvidenceRowRequest& row, bool checked);
    /// Offers the concept panel (a checkbox, checked when `checked`).
    void offerConceptPanel(const ConceptPanelRequest& panel, bool checked);

    /// Writes the files for `request` (runs in the caller's thread); throws std::runtime_error
    /// with a message naming the file on failure.
    static void exportTo(const ExplainResult& result, const QImage& currentView, const ExportRequest& request);
    /// Same, reporting progress between steps. Returns the files written (figure or view first),
    /// or an empty list when `progress` cancelled (files already written stay).
    static QStringList exportTo(const ExplainResult& result, const QImage& currentView, const ExportRequest& request,
                                const ExportProgress& progress);

    /// Parses "3,5" (spaces allowed) into k values, each in [2, maxK]; on failure returns an empty
    /// list and sets `error` to a sentence for the user.
    static std::vector<int> parseKs(const QString& text, int maxK, QString* error = nullptr);
    /// Default file name (no folder) for a result and kind: "<image stem>_fec_figure.png".
    static QString defaultFileName(const ExplainResult& result, ExportRequest::Kind kind);

public Q_SLOTS:
    /// Validates, exports with a progress dialog, shows errors in a message box; closes on success.
    void accept() override;

private:
    struct Private;
    std::unique_ptr<Private> d;
};

}  // namespace fec::ui
