#pragma once

// Real results for the explorer tests: a reference checkpoint loaded and run through the same
// pipeline the inference worker uses (fec::ui::loadModelBundle + runExplain).

#include <memory>
#include <string>

#include <QString>
#include <QtTest/QtTest>

#include "fec/ui/model_bundle.h"
#include "reference.h"

namespace fec::test {

inline QString refPath(const std::string& relative)
{
    return QString::fromStdString(referencePath(relative));
}

inline QString chelseaPath()
{
    return refPath("inputs/chelsea.png");
}

inline std::shared_ptr<ui::ModelBundle> loadBundle(const std::string& checkpoint = "tiny_seed0.pth.tar")
{
    ui::ModelLoadOptions options;
    options.path = refPath(checkpoint);
    options.device = QStringLiteral("cpu");
    return ui::loadModelBundle(options);
}

inline ui::ExplainResultPtr explain(const ui::ModelBundle& bundle, const QString& image = chelseaPath(), quint64 id = 1)
{
    ui::ExplainRequest request;
    request.requestId = id;
    request.imagePath = image;
    request.size = 224;
    request.preprocess = QStringLiteral("squash");
    return ui::runExplain(bundle, request);
}

}  // namespace fec::test

/// Skips the test (with the reason) when a reference fixture is missing.
#define FEC_REQUIRE_FIXTURE(relative)                                                                                  \
    do {                                                                                                               \
        if (!fec::test::referenceExists(relative))                                                                     \
            QSKIP(qPrintable(QStringLiteral("reference fixture %1 missing (set FEC_REFERENCE_DIR)")                    \
                                 .arg(fec::test::refPath(relative))));                                                 \
    } while (0)
