#include "fec/ui/explain_pipeline.h"

#include <algorithm>
#include <chrono>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>

#include <QFile>
#include <QFileInfo>
#include <QLocale>

#include "fec/analysis.h"
#include "fec/cli/cli.h"
#include "fec/imaging/image.h"
#include "fec/imaging/kmeans.h"
#include "fec/runtime.h"

namespace fec::ui {

namespace {

using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point start)
{
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

QString qs(const std::string& text)
{
    return QString::fromStdString(text);
}

// Engine messages usually start with the file; add it when they do not.
std::string withFile(const std::string& message, const QString& path)
{
    const auto name = QFileInfo(path).fileName().toStdString();
    if (message.find(name) != std::string::npos)
        return message;
    return path.toStdString() + ": " + message;
}

ModelSummary describe(const ModelBundle& bundle, double loadSeconds)
{
    const auto& info = bundle.loaded.info;
    const auto& cfg = info.inferred.config;
    ModelSummary s;
    s.path = qs(info.path);
    s.fileName = QFileInfo(s.path).fileName();
    s.container = qs(info.container);
    s.layout = qs(info.layout);
    s.usesEma = info.weights == "state_dict_ema";
    s.weights = qs(info.weights);
    if (info.layout == "timm training checkpoint")
        s.weights += info.hasEma ? (s.usesEma ? QStringLiteral(" (EMA; raw state_dict also present)")
                                              : QStringLiteral(" (raw; state_dict_ema also present)"))
                                 : QStringLiteral(" (no EMA weights in the file)");
    if (!info.strippedPrefix.empty())
        s.weights += QStringLiteral(", prefix '%1' removed").arg(qs(info.strippedPrefix));
    s.variant = qs(cfg.variant);
    s.architecture = qs(cfg.summary());
    s.architectureSource = info.configStored ? QStringLiteral("stored in the checkpoint")
                                             : (info.inferred.headsGuessed ? QStringLiteral("inferred from shapes (heads guessed)")
                                                                           : QStringLiteral("inferred from shapes"));
    s.notes = qs(info.inferred.notes);
    s.parameters = info.parameterCount;
    s.numClasses = cfg.numClasses;
    s.classNamesSource = !info.classNames.empty() ? QStringLiteral("stored in the checkpoint")
                         : cfg.numClasses == 1000 ? QStringLiteral("ImageNet-1K")
                         : cfg.numClasses == 0    ? QStringLiteral("backbone (no classifier)")
                                                  : QStringLiteral("numbered");
    for (const auto& n : bundle.classNames)
        s.classNames << qs(n);
    s.storedInputSize = info.inputSize;
    s.storedPreprocess = qs(info.preprocess);
    s.sizeMultiple = cfg.sizeMultiple();
    s.levels = 3;
    s.device = qs(bundle.device.str());
    s.loadTime = QStringLiteral("%1 s").arg(loadSeconds, 0, 'f', 2);
    return s;
}

}  // namespace

QList<QPair<QString, QString>> ModelSummary::rows() const
{
    const QLocale locale;
    QList<QPair<QString, QString>> r;
    r << qMakePair(QStringLiteral("File"), fileName) << qMakePair(QStringLiteral("Folder"), QFileInfo(path).absolutePath())
      << qMakePair(QStringLiteral("Format"), container == QLatin1String("zip") ? QStringLiteral("zip (torch.save)")
                                                                               : QStringLiteral("legacy torch.save"))
      << qMakePair(QStringLiteral("Layout"), layout) << qMakePair(QStringLiteral("Weights"), weights)
      << qMakePair(QStringLiteral("Variant"), variant) << qMakePair(QStringLiteral("Architecture"), architecture)
      << qMakePair(QStringLiteral("Source"), architectureSource);
    if (!notes.isEmpty())
        r << qMakePair(QStringLiteral("Notes"), notes);
    r << qMakePair(QStringLiteral("Parameters"),
                   QStringLiteral("%1 (%2 M)").arg(locale.toString(parameters)).arg(parameters / 1e6, 0, 'f', 2));
    QString classes = QString::number(numClasses);
    if (numClasses > 0)
        classes += QStringLiteral(" (%1; first: %2)").arg(classNamesSource, classNames.value(0));
    else
        classes = classNamesSource;
    r << qMakePair(QStringLiteral("Classes"), classes);
    if (storedInputSize > 0)
        r << qMakePair(QStringLiteral("Trained input"), QStringLiteral("%1×%1 %2").arg(storedInputSize).arg(storedPreprocess));
    r << qMakePair(QStringLiteral("Size multiple"), QString::number(sizeMultiple));
    r << qMakePair(QStringLiteral("Device"), device) << qMakePair(QStringLiteral("Load time"), loadTime);
    return r;
}

std::vector<int> inputSizeChoices(int sizeMultiple)
{
    std::vector<int> sizes;
    const int m = std::max(1, sizeMultiple);
    for (int s = ((96 + m - 1) / m) * m; s <= 512; s += m)
        sizes.push_back(s);
    return sizes;
}

std::shared_ptr<ModelBundle> loadModelBundle(const ModelLoadOptions& options)
{
    const auto start = Clock::now();
    auto bundle = std::make_shared<ModelBundle>();
    try {
        LoadOptions load;
        load.weights = parseWeightsChoice(options.weights.toStdString());
        bundle->device = selectDevice(options.device.toStdString());
        if (!QFileInfo::exists(options.path))
            throw std::runtime_error(options.path.toStdString() + ": no such file");
        bundle->loaded = loadCheckpoint(QFile::encodeName(options.path).toStdString(), load);
        bundle->loaded.model->eval();
        bundle->loaded.model->to(bundle->device);
        const auto& cfg = bundle->loaded.info.inferred.config;
        bundle->classNames = cli::classNamesFor(cfg.numClasses, bundle->loaded.info.classNames, "");
    } catch (const CheckpointError&) {
        throw;
    } catch (const c10::Error& e) {
        throw std::runtime_error(withFile(e.what_without_backtrace(), options.path));
    } catch (const std::exception& e) {
        throw std::runtime_error(withFile(e.what(), options.path));
    }
    bundle->name = QFileInfo(options.path).fileName();
    bundle->summary = describe(*bundle, msSince(start) / 1000.0);
    return bundle;
}

ExplainResultPtr runExplain(const ModelBundle& model, const ExplainRequest& request, const std::atomic<bool>* cancel)
{
    const auto check = [cancel] {
        if (cancel && cancel->load())
            throw ExplainCancelled();
    };
    auto result = std::make_shared<ExplainResult>();
    result->requestId = request.requestId;
    result->imagePath = request.imagePath;
    result->modelName = model.name;
    try {
        // Inference tensors of the trace stay read-only afterwards; analysis runs under the same mode.
        c10::InferenceMode guard;
        const auto& info = model.loaded.info;
        const auto& cfg = info.inferred.config;
        result->image = imaging::loadImageRgb(QFile::encodeName(request.imagePath).toStdString());
        check();
        const int size = request.size > 0 ? request.size : (info.inputSize > 0 ? info.inputSize : 224);
        cfg.checkInputSize(size, size);
        const auto mode = imaging::parsePreprocess(!request.preprocess.isEmpty() ? request.preprocess.toStdString()
                                                   : !info.preprocess.empty()    ? info.preprocess
                                                                                 : std::string("squash"));
        result->prepared = imaging::prepareImage(result->image, size, mode);
        check();

        auto start = Clock::now();
        TraceOptions options;
        options.pools = true;
        options.blocks = true;
        result->trace = model.loaded.model.ptr()->forwardTraced(result->prepared.tensor.unsqueeze(0).to(model.device), options);
        result->inferenceMs = msSince(start);
        check();

        start = Clock::now();
        result->pyramid = buildPyramid(result->trace, 0);
        check();
        result->partitions = encodingPartitions(result->trace, 0);
        check();
        try {
            result->merger = std::make_shared<imaging::ClusterMerger>(result->pyramid);
        } catch (const std::invalid_argument&) {
            result->merger.reset();  // no features on the last pool: K-means is unavailable
        }
        if (result->trace.logits.defined() && cfg.numClasses > 0) {
            const auto probs = at::softmax(result->trace.logits[0].to(at::kFloat), 0);
            const auto top = probs.topk(std::min<int64_t>(5, probs.size(0)));
            const auto values = std::get<0>(top).contiguous();
            const auto indices = std::get<1>(top).contiguous();
            for (int64_t i = 0; i < values.size(0); ++i) {
                const auto cls = indices[i].item<int64_t>();
                const auto name = cls < static_cast<int64_t>(model.classNames.size()) ? qs(model.classNames[cls])
                                                                                       : QStringLiteral("class %1").arg(cls);
                result->topClasses.emplace_back(name, values[i].item<double>());
            }
        }
        result->analysisMs = msSince(start);
        result->device = qs(describeDevice(model.device));
    } catch (const ExplainCancelled&) {
        throw;
    } catch (const c10::Error& e) {
        throw std::runtime_error(withFile(e.what_without_backtrace(), request.imagePath));
    } catch (const std::exception& e) {
        throw std::runtime_error(withFile(e.what(), request.imagePath));
    }
    return result;
}

}  // namespace fec::ui
