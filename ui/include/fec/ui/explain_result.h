#pragma once

// What the inference worker hands to the views: everything about one image under one model.
// Produced on the worker thread, then read-only except `merger` (GUI thread only).

#include <memory>
#include <vector>

#include <opencv2/core.hpp>

#include <QMetaType>
#include <QString>

#include "fec/analysis.h"
#include "fec/imaging/image.h"
#include "fec/imaging/kmeans.h"
#include "fec/model.h"

namespace fec::ui {

/// One run of a model on one image.
struct ExplainResult {
    quint64 requestId = 0;
    QString imagePath;
    QString modelName;               ///< checkpoint file name (or a label given by the user)
    cv::Mat image;                   ///< original image, RGB 8-bit
    imaging::PreparedImage prepared; ///< model input (S x S) and the mapping back to the image
    Trace trace;                     ///< pools and blocks traced (CPU tensors)
    SegmentPyramid pyramid;
    std::vector<EncodingPartition> partitions;  ///< one per ClusterBlock
    /// K-means of the last level; GUI thread only (merge() caches).
    std::shared_ptr<imaging::ClusterMerger> merger;
    std::vector<std::pair<QString, double>> topClasses;  ///< top-5 (name, probability)
    double inferenceMs = 0;          ///< traced forward
    double analysisMs = 0;           ///< pyramid + hierarchy + partitions + merger set-up
    QString device;                  ///< "cpu (2 threads)", "cuda:0"
};

using ExplainResultPtr = std::shared_ptr<const ExplainResult>;

}  // namespace fec::ui

Q_DECLARE_METATYPE(fec::ui::ExplainResultPtr)
