#pragma once

// A real ExplainResult for view tests: a reference checkpoint run on the reference image
// (chelsea.png, 224x224 squash), as the explorer's inference worker would produce it.

#include <memory>
#include <string>

#include <c10/core/InferenceMode.h>

#include <QFileInfo>
#include <QString>

#include "fec/analysis.h"
#include "fec/checkpoint.h"
#include "fec/imaging/image.h"
#include "fec/imaging/kmeans.h"
#include "fec/ui/explain_result.h"
#include "reference.h"

namespace fec::test {

/// Runs `checkpoint` (a file under the reference folder) on chelsea.png. Throws when the
/// fixtures are missing (tests check referenceExists first and skip with a message).
inline ui::ExplainResultPtr makeExplainResult(const std::string& checkpoint = "tiny_seed0.pth.tar")
{
    auto loaded = loadCheckpoint(referencePath(checkpoint));
    auto result = std::make_shared<ui::ExplainResult>();
    result->imagePath = QString::fromStdString(referencePath("inputs/chelsea.png"));
    result->modelName = QString::fromStdString(checkpoint);
    result->image = imaging::loadImageRgb(referencePath("inputs/chelsea.png"));
    result->prepared = imaging::prepareImage(result->image, 224, imaging::Preprocess::Squash);
    {
        c10::InferenceMode guard;
        result->trace = loaded.model->forwardTraced(result->prepared.tensor.unsqueeze(0));
    }
    result->pyramid = buildPyramid(result->trace, 0);
    result->partitions = encodingPartitions(result->trace, 0);
    result->merger = std::make_shared<imaging::ClusterMerger>(result->pyramid);
    result->device = QStringLiteral("cpu");
    return result;
}

/// True when the reference fixtures this header needs are present.
inline bool viewFixturesPresent(const std::string& checkpoint = "tiny_seed0.pth.tar")
{
    return referenceExists(checkpoint) && referenceExists("inputs/chelsea.png");
}

}  // namespace fec::test
