#pragma once

// What the inference worker runs on its thread: loading a checkpoint for the window (a
// ModelBundle) and explaining one image through the engine's one explain pipeline
// (fec::explain::explainImage), adding class names and the device. Tests call these directly.

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include <QString>

#include "fec/checkpoint.h"
#include "fec/ui/explain_request.h"
#include "fec/ui/explain_result.h"
#include "fec/ui/model_summary.h"

namespace fec::ui {

/// How the window wants a checkpoint loaded.
struct ModelLoadOptions {
    QString path;
    QString weights = QStringLiteral("auto");  ///< "auto", "state_dict", "ema"
    QString device = QStringLiteral("auto");   ///< "auto", "cpu", "cuda", "cuda:N"
    int threads = 0;                           ///< CPU threads; 0: one per core
};

/// A model ready to run, with what the window shows about it.
struct ModelBundle {
    LoadedModel loaded;
    c10::Device device{c10::kCPU};
    std::vector<std::string> classNames;
    QString name;  ///< checkpoint file name
    ModelSummary summary;
};

/// Reads the checkpoint, builds the model, moves it to the device and describes it. Throws
/// std::runtime_error with a readable message (checkpoint problems name the file).
std::shared_ptr<ModelBundle> loadModelBundle(const ModelLoadOptions& options);

/// A run stopped because a newer request or cancel() arrived.
class ExplainCancelled : public std::runtime_error {
public:
    ExplainCancelled() : std::runtime_error("cancelled") {}
};

/// Explains one image; checks `cancel` between stages (throws ExplainCancelled). Must run in a
/// thread where it may open c10::InferenceMode. Throws std::runtime_error naming the image file
/// on any other failure.
ExplainResultPtr runExplain(const ModelBundle& model, const ExplainRequest& request,
                            const std::atomic<bool>* cancel = nullptr);

/// Input sides offered in the Model menu: multiples of `sizeMultiple` from 96 to 512, 224 included
/// when the multiple divides it.
std::vector<int> inputSizeChoices(int sizeMultiple);

}  // namespace fec::ui
