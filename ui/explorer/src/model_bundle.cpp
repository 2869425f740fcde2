#include "fec/ui/model_bundle.h"

#include <algorithm>
#include <chrono>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>

#include <QFile>
#include <QFileInfo>
#include <QLocale>

#include "fec/analysis.h"
#include "fec/resources.h"
#include "fec/explain/explain.h"
#include "fec/runtime.h"
#include "fec/text.h"

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

// A string read from the checkpoint (class names, variant, key prefix), escaped like the command
// line shows it: no control characters, bidirectional overrides or invalid UTF-8 reach a label.
QString shown(const std::string& text)
{
    return QString::fromStdString(printable(text));
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
    s.layout = qs(toString(info.layout));
    s.usesEma = info.weights == WeightsEntry::StateDictEma;
    s.weights = qs(weightsDescription(info));
    if (info.layout == CheckpointLayout::TimmTraining)
        s.weights += info.hasEma ? (s.usesEma ? QStringLiteral(" (EMA; raw state_dict also present)")
                                              : QStringLiteral(" (raw; state_dict_ema also present)"))
                                 : QStringLiteral(" (no EMA weights in the file)");
    if (!info.strippedPrefix.empty())
        s.weights += QStringLiteral(", prefix '%1' removed").arg(shown(info.strippedPrefix));
    s.variant = shown(cfg.variant);
    s.architecture = shown(cfg.summary());
    s.architectureSource = info.configStored
                               ? QStringLiteral("stored in the checkpoint")
                               : (info.inferred.headsGuessed ? QStringLiteral("inferred from shapes (heads guessed)")
                                                             : QStringLiteral("inferred from shapes"));
    s.notes = shown(info.inferred.notes);
    s.parameters = info.parameterCount;
    s.numClasses = cfg.numClasses;
    s.classNamesSource = !info.classNames.empty() ? QStringLiteral("stored in the checkpoint")
                         : cfg.numClasses == 1000 ? QStringLiteral("ImageNet-1K")
                         : cfg.numClasses == 0    ? QStringLiteral("backbone (no classifier)")
                                                  : QStringLiteral("numbered");
    for (const auto& n : bundle.classNames)
        s.classNames << shown(n);
    s.storedInputSize = info.inputSize;
    s.storedPreprocess = shown(info.preprocess);
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
    r << qMakePair(QStringLiteral("File"), fileName)
      << qMakePair(QStringLiteral("Folder"), QFileInfo(path).absolutePath())
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
        r << qMakePair(QStringLiteral("Trained input"),
                       QStringLiteral("%1×%1 %2").arg(storedInputSize).arg(storedPreprocess));
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
        bundle->classNames = fec::classNamesFor(cfg.numClasses, bundle->loaded.info.classNames, "");
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
    auto result = std::make_shared<ExplainResult>();
    result->requestId = request.requestId;
    result->imagePath = request.imagePath;
    result->modelName = model.name;
    try {
        explain::ExplainOptions options;
        options.size = request.size;
        options.preprocess = request.preprocess.toStdString();
        options.blocks = true;
        const auto check = [cancel] {
            if (cancel && cancel->load())
                throw ExplainCancelled();
        };
        static_cast<explain::Explanation&>(*result) =
            explain::explainImage(*model.loaded.model.ptr(), model.loaded.info, model.device,
                                  QFile::encodeName(request.imagePath).toStdString(), options, check);
        // NaN or infinite outputs rank nothing (topClasses) and cluster into one meaningless
        // segment: the window shows this failure, naming the image, instead of a result.
        if (result->trace.logits.defined() && !at::isfinite(result->trace.logits).all().item<bool>())
            throw std::runtime_error("the model's outputs are not finite (NaN/inf) for " +
                                     request.imagePath.toStdString());
        for (const auto& c : result->top) {
            const auto name = c.index < static_cast<int64_t>(model.classNames.size())
                                  ? shown(model.classNames[static_cast<size_t>(c.index)])
                                  : QStringLiteral("class %1").arg(c.index);
            result->topClasses.emplace_back(name, c.probability);
        }
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
