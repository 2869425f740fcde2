#pragma once

// What the inference worker hands to the views: everything about one image under one model.
// Produced on the worker thread, then read-only except `merger` (GUI thread only: merge() caches).

#include <memory>
#include <vector>

#include <opencv2/core.hpp>

#include <QMetaType>
#include <QString>

#include "fec/explain/explain.h"

namespace fec::ui {

/// One run of a model on one image: the engine's Explanation (image, prepared input, trace,
/// pyramid, partitions, merger, top classes, timings) plus what the window adds.
struct ExplainResult : explain::Explanation {
    quint64 requestId = 0;
    QString imagePath;
    QString modelName;                                   ///< checkpoint file name (or a label given by the user)
    std::vector<std::pair<QString, double>> topClasses;  ///< `top` with class names
    QString device;                                      ///< "cpu (2 threads)", "cuda:0"
};

using ExplainResultPtr = std::shared_ptr<const ExplainResult>;

}  // namespace fec::ui

Q_DECLARE_METATYPE(fec::ui::ExplainResultPtr)
