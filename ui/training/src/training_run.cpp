#include "fec/ui/training_run.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include <string>
#include <type_traits>
#include <utility>

#include <QCoreApplication>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QProcess>
#include <QRegularExpression>
#include <QSaveFile>

#ifdef Q_OS_UNIX
#include <csignal>
#include <unistd.h>
#endif

#include "fec/train/run_lock.h"
#include "fec/train/train_options.h"

namespace fec::ui {

namespace {

const char* const kLogFile = "train.log";
const char* const kMetricsFile = "metrics.jsonl";
const char* const kProcessFile = "explorer-process.json";
constexpr int kLogTailLines = 400;
constexpr qint64 kInitialLogBytes = 64 * 1024;

QString tr(const char* text)
{
    return QCoreApplication::translate("fec::ui::TrainingRun", text);
}

QString number(double v)
{
    return QString::number(v, 'g', 12);
}

QString absolute(const QString& path)
{
    return path.isEmpty() ? path : QFileInfo(path).absoluteFilePath();
}

// Every field of the spec with its JSON name: one list for saving and loading.
template <typename Spec, typename F> void visitFields(Spec& s, F&& f)
{
    f("data", s.data);
    f("val", s.val);
    f("val_split", s.valSplit);
    f("train_limit", s.trainLimit);
    f("val_limit", s.valLimit);
    f("out", s.out);
    f("checkpoint", s.checkpoint);
    f("arch", s.arch);
    f("layers", s.layers);
    f("dims", s.dims);
    f("heads", s.heads);
    f("head_dims", s.headDims);
    f("mlp_ratios", s.mlpRatios);
    f("proposals", s.proposals);
    f("freeze_stages", s.freezeStages);
    f("weights", s.weights);
    f("size", s.size);
    f("epochs", s.epochs);
    f("max_steps", s.maxSteps);
    f("batch", s.batch);
    f("accum", s.accum);
    f("lr", s.lr);
    f("min_lr", s.minLr);
    f("warmup_lr", s.warmupLr);
    f("warmup_epochs", s.warmupEpochs);
    f("weight_decay", s.weightDecay);
    f("clip", s.clip);
    f("ema", s.ema);
    f("drop_path", s.dropPath);
    f("smoothing", s.smoothing);
    f("mixup", s.mixup);
    f("cutmix", s.cutmix);
    f("reprob", s.reprob);
    f("hflip", s.hflip);
    f("crop_scale", s.cropScale);
    f("eval_resize", s.evalResize);
    f("no_augment", s.noAugment);
    f("tensorboard", s.tensorboard);
    f("seed", s.seed);
    f("workers", s.workers);
    f("log_every", s.logEvery);
    f("threads", s.threads);
    f("device", s.device);
    f("extra_arguments", s.extraArguments);
}

QString joinNumbers(const QJsonValue& v)
{
    QStringList parts;
    for (const auto& x : v.toArray())
        parts << number(x.toDouble());
    return parts.join(QLatin1Char(','));
}

// "a,b,c,d" with numbers (the custom architecture flags).
bool isStageList(const QString& text)
{
    const auto parts = text.split(QLatin1Char(','));
    if (parts.size() != 4)
        return false;
    for (const auto& p : parts) {
        bool ok = false;
        p.trimmed().toDouble(&ok);
        if (!ok)
            return false;
    }
    return true;
}

// The spec's fields that are `fec train` options, each with its TrainOptions field: one list
// for both directions. The flags, defaults and run.json keys are the options table's.
template <typename Spec, typename Options, typename F> void pairOptions(Spec& s, Options& o, F&& f)
{
    f(s.size, o.size);
    f(s.epochs, o.epochs);
    f(s.maxSteps, o.maxSteps);
    f(s.batch, o.batch);
    f(s.accum, o.accum);
    f(s.lr, o.lr);
    f(s.minLr, o.minLr);
    f(s.warmupLr, o.warmupLr);
    f(s.warmupEpochs, o.warmupEpochs);
    f(s.weightDecay, o.weightDecay);
    f(s.clip, o.clipGrad);
    f(s.ema, o.emaDecay);
    f(s.dropPath, o.dropPath);
    f(s.smoothing, o.mix.smoothing);
    f(s.mixup, o.mix.mixupAlpha);
    f(s.cutmix, o.mix.cutmixAlpha);
    f(s.reprob, o.augment.eraseProb);
    f(s.hflip, o.augment.hflip);
    f(s.cropScale, o.augment.scaleMin);
    f(s.evalResize, o.evalResize);
    f(s.weights, o.weights);
    f(s.tensorboard, o.tensorboard);
    f(s.seed, o.seed);
    f(s.workers, o.workers);
    f(s.logEvery, o.logEvery);
    f(s.device, o.device);
}

void assign(QString& to, const std::string& from)
{
    to = QString::fromStdString(from);
}
void assign(std::string& to, const QString& from)
{
    to = from.toStdString();
}
void assign(QString& to, fec::WeightsChoice from)
{
    to = from == fec::WeightsChoice::Ema         ? QStringLiteral("ema")
         : from == fec::WeightsChoice::StateDict ? QStringLiteral("state_dict")
                                                 : QStringLiteral("auto");
}
void assign(fec::WeightsChoice& to, const QString& from)
{
    try {
        to = fec::parseWeightsChoice(from.toStdString());
    } catch (const std::invalid_argument&) {
        to = fec::WeightsChoice::Auto;
    }
}
template <typename To, typename From> void assign(To& to, const From& from)
{
    to = static_cast<To>(from);
}

void setFromOptions(TrainingSpec& s, const fec::train::TrainOptions& o)
{
    pairOptions(s, o, [](auto& to, const auto& from) { assign(to, from); });
}

fec::train::TrainOptions optionsOf(const TrainingSpec& s)
{
    fec::train::TrainOptions o;
    pairOptions(s, o, [](const auto& from, auto& to) { assign(to, from); });
    if (s.device.isEmpty())
        o.device = fec::train::TrainOptions().device;
    return o;
}

}  // namespace

TrainingSpec::TrainingSpec()
{
    setFromOptions(*this, fec::train::TrainOptions());
}

QString shellCommand(const QStringList& command)
{
    static const QRegularExpression plain(QStringLiteral("^[A-Za-z0-9_@%+=:,./-]+$"));
    QStringList words;
    for (const auto& word : command)
        words << (plain.match(word).hasMatch()
                      ? word
                      : QLatin1Char('\'') + QString(word).replace(QLatin1String("'"), QLatin1String("'\\''")) +
                            QLatin1Char('\''));
    return words.join(QLatin1Char(' '));
}

namespace {

// Why `fec train` cannot have `dir`: the process holding its lock, in the trainer's own words.
// Empty when nobody holds it.
QString runFolderBusyMessage(const QString& dir)
{
    const long owner = fec::train::runFolderOwner(dir.toStdString());
    if (owner == 0)
        return {};
    return QString::fromStdString(fec::train::RunFolderBusy(dir.toStdString(), owner > 0 ? owner : 0).what());
}

QString lastMeaningfulLine(const QStringList& lines)
{
    for (auto it = lines.crbegin(); it != lines.crend(); ++it) {
        const QString line = it->trimmed();
        if (!line.isEmpty() && !line.startsWith(QLatin1String("====")))
            return line;
    }
    return {};
}

}  // namespace

QString TrainingSpec::validate() const
{
    if (data.isEmpty())
        return tr("Choose the training data (an image folder or a Fashion-MNIST folder).");
    if (!QFileInfo(data).isDir())
        return tr("The training data %1 is not a folder.").arg(data);
    if (!val.isEmpty() && !QFileInfo(val).isDir())
        return tr("The validation data %1 is not a folder.").arg(val);
    if (out.isEmpty())
        return tr("Choose a run folder.");
    if (QFileInfo(out).exists() && !QFileInfo(out).isDir())
        return tr("The run folder %1 is a file.").arg(out);
    if (!checkpoint.isEmpty() && !QFileInfo(checkpoint).isFile())
        return tr("The checkpoint %1 does not exist.").arg(checkpoint);
    if (checkpoint.isEmpty() && arch == QLatin1String("custom")) {
        const QList<QPair<QString, QString>> stages = {
            {QStringLiteral("layers"), layers},        {QStringLiteral("dims"), dims},
            {QStringLiteral("heads"), heads},          {QStringLiteral("head dims"), headDims},
            {QStringLiteral("MLP ratios"), mlpRatios}, {QStringLiteral("proposals"), proposals}};
        bool any = false;
        for (const auto& [what, text] : stages) {
            if (text.trimmed().isEmpty())
                continue;
            any = true;
            if (!isStageList(text))
                return tr("Custom architecture: %1 needs four comma-separated numbers, one per stage (got \"%2\").")
                    .arg(what, text);
        }
        if (!any)
            return tr(
                "Custom architecture: give at least one of layers, dims, heads, head dims, MLP ratios or proposals.");
    }
    if (size < 32 || size % 32 != 0)
        return tr("The input size must be a multiple of 32 (got %1).").arg(size);
    if (valSplit < 0 || valSplit > 0.9)
        return tr("The validation split must be between 0 and 0.9.");
    if (!freezeStages.trimmed().isEmpty()) {
        for (const auto& s : freezeStages.split(QLatin1Char(','))) {
            bool ok = false;
            const int stage = s.trimmed().toInt(&ok);
            if (!ok || stage < 0 || stage > 3)
                return tr("Frozen stages are comma-separated numbers 0-3 (got \"%1\").").arg(freezeStages);
        }
    }
    return {};
}

QStringList TrainingSpec::arguments() const
{
    const TrainingSpec d;
    QStringList a;
    if (threads > 0)
        a << QStringLiteral("--threads") << QString::number(threads);
    a << QStringLiteral("train") << QStringLiteral("--data") << absolute(data) << QStringLiteral("--out")
      << absolute(out);
    if (!val.isEmpty())
        a << QStringLiteral("--val") << absolute(val);
    if (valSplit != d.valSplit)
        a << QStringLiteral("--val-split") << number(valSplit);
    if (trainLimit > 0)
        a << QStringLiteral("--train-limit") << QString::number(trainLimit);
    if (valLimit > 0)
        a << QStringLiteral("--val-limit") << QString::number(valLimit);
    auto options = optionsOf(*this);
    if (!checkpoint.isEmpty()) {
        options.checkpoint = absolute(checkpoint).toStdString();
    } else if (arch == QLatin1String("custom")) {
        const QList<QPair<const char*, QString>> stages = {{"--layers", layers},        {"--dims", dims},
                                                           {"--heads", heads},          {"--head-dims", headDims},
                                                           {"--mlp-ratios", mlpRatios}, {"--proposals", proposals}};
        for (const auto& [flag, text] : stages)
            if (!text.trimmed().isEmpty())
                a << QLatin1String(flag) << QString(text).remove(QLatin1Char(' '));
    } else if (!arch.isEmpty()) {
        a << QStringLiteral("--arch") << arch;
    }
    const QString frozen = QString(freezeStages).remove(QLatin1Char(' '));
    bool frozenParsed = true;
    if (!frozen.isEmpty()) {
        try {
            fec::train::findTrainOption("--freeze-stages")->set(options, frozen.toStdString());
        } catch (const std::invalid_argument&) {
            frozenParsed = false;  // passed as typed below; validate() says what is wrong
        }
    }
    // The settings a user reads first are always spelled out; the rest only when changed.
    for (const auto& arg : fec::train::optionArguments(options, {"--size", "--epochs", "--batch", "--lr", "--seed"}))
        a << QString::fromStdString(arg);
    if (!frozenParsed)
        a << QStringLiteral("--freeze-stages") << frozen;
    if (noAugment)
        a << QStringLiteral("--no-augment");
    if (!extraArguments.trimmed().isEmpty())
        a << QProcess::splitCommand(extraArguments);
    return a;
}

QJsonObject TrainingSpec::toJson() const
{
    QJsonObject o;
    visitFields(*this, [&o](const char* key, const auto& value) {
        using T = std::decay_t<decltype(value)>;
        if constexpr (std::is_same_v<T, QString> || std::is_same_v<T, bool> || std::is_same_v<T, double> ||
                      std::is_same_v<T, int>)
            o.insert(QLatin1String(key), value);
        else
            o.insert(QLatin1String(key), QString::number(value));  // 64-bit values exactly
    });
    return o;
}

TrainingSpec TrainingSpec::fromJson(const QJsonObject& json)
{
    TrainingSpec s;
    visitFields(s, [&json](const char* key, auto& value) {
        const QJsonValue v = json.value(QLatin1String(key));
        if (v.isUndefined() || v.isNull())
            return;
        using T = std::decay_t<decltype(value)>;
        if constexpr (std::is_same_v<T, QString>)
            value = v.toString(value);
        else if constexpr (std::is_same_v<T, bool>)
            value = v.toBool(value);
        else if constexpr (std::is_same_v<T, double>)
            value = v.toDouble(value);
        else if constexpr (std::is_same_v<T, int>)
            value = v.toInt(value);
        else if (v.isString()) {
            bool ok = false;
            const auto parsed = v.toString().toLongLong(&ok);
            if (ok)
                value = static_cast<T>(parsed);
        }
    });
    return s;
}

TrainingSpec TrainingSpec::fromRunJson(const QJsonObject& run, const QString& dir)
{
    TrainingSpec s;
    s.out = dir;
    QJsonObject o = run.value(QLatin1String("options")).toObject();
    const QJsonObject command = run.value(QLatin1String("command")).toObject();
    s.data = command.value(QLatin1String("data")).toString();
    s.val = command.value(QLatin1String("val")).toString();
    s.valSplit = command.value(QLatin1String("val_split")).toDouble(0);
    s.trainLimit = static_cast<qint64>(command.value(QLatin1String("train_limit")).toDouble(0));
    s.valLimit = static_cast<qint64>(command.value(QLatin1String("val_limit")).toDouble(0));
    const QJsonObject config = o.take(QLatin1String("config")).toObject();
    const QString variant = config.value(QLatin1String("variant")).toString();
    if (variant == QLatin1String("custom")) {
        s.arch = variant;
        s.layers = joinNumbers(config.value(QLatin1String("layers")));
        s.dims = joinNumbers(config.value(QLatin1String("dims")));
        s.heads = joinNumbers(config.value(QLatin1String("heads")));
        s.headDims = joinNumbers(config.value(QLatin1String("head_dims")));
        s.mlpRatios = joinNumbers(config.value(QLatin1String("mlp_ratios")));
        s.proposals = joinNumbers(config.value(QLatin1String("proposal_w")));
    } else if (!variant.isEmpty()) {
        s.arch = variant;
    }
    // The options through the table that wrote them (the architecture is read above).
    fec::train::TrainOptions options;
    try {
        fec::train::optionsFromJson(QJsonDocument(o).toJson(QJsonDocument::Compact).toStdString(), options);
    } catch (const std::invalid_argument&) {
        options = {};  // not a run.json of this format: the defaults, the data and architecture above
    }
    setFromOptions(s, options);
    s.checkpoint = QString::fromStdString(options.checkpoint);
    s.freezeStages = QString::fromStdString(fec::train::findTrainOption("--freeze-stages")->value(options));
    s.noAugment = !options.augment.randomCrop && options.augment.hflip == 0 && options.augment.eraseProb == 0;
    return s;
}

RunFinalRecord RunFinalRecord::fromRunJson(const QJsonObject& run)
{
    RunFinalRecord r;
    const QJsonValue value = run.value(QLatin1String("final"));
    if (!value.isObject())
        return r;
    const QJsonObject f = value.toObject();
    r.present = true;
    r.status = f.value(QLatin1String("status")).toString();
    r.steps = static_cast<qint64>(f.value(QLatin1String("steps")).toDouble(0));
    r.totalSteps = static_cast<qint64>(f.value(QLatin1String("total_steps")).toDouble(0));
    r.epochs = f.value(QLatin1String("epochs")).toInt(0);
    const QJsonObject best = f.value(QLatin1String("best_metric")).toObject();
    if (!best.isEmpty()) {
        r.bestMetricName = best.value(QLatin1String("name")).toString();
        r.bestMetric = best.value(QLatin1String("value")).toDouble(0);
        r.bestEpoch = best.value(QLatin1String("epoch")).toInt(-1);
    }
    r.exitReason = f.value(QLatin1String("exit_reason")).toString();
    const double finished = f.value(QLatin1String("finished_at")).toDouble(0);
    if (finished > 0)
        r.finishedAt = QDateTime::fromMSecsSinceEpoch(static_cast<qint64>(finished * 1000.0));
    r.lastCheckpoint = f.value(QLatin1String("last_checkpoint")).toString();
    r.bestCheckpoint = f.value(QLatin1String("best_checkpoint")).toString();
    return r;
}

QString runStatusName(RunStatus status)
{
    switch (status) {
    case RunStatus::New:
        return tr("new");
    case RunStatus::Starting:
        return tr("starting");
    case RunStatus::Running:
        return tr("running");
    case RunStatus::Stopping:
        return tr("stopping");
    case RunStatus::Finished:
        return tr("finished");
    case RunStatus::Stopped:
        return tr("stopped");
    case RunStatus::Failed:
        return tr("failed");
    }
    return {};
}

TrainingRun::TrainingRun(const TrainingSpec& spec, QObject* parent)
    : QObject(parent), m_spec(spec), m_dir(absolute(spec.out))
{
    m_timer.setInterval(kPollMs);
    connect(&m_timer, &QTimer::timeout, this, &TrainingRun::poll);
    m_metrics.setPath(metricsPath());
}

TrainingRun::~TrainingRun()
{
    if (!m_process)
        return;
    disconnect(m_process, nullptr, this, nullptr);
    if (m_process->state() != QProcess::NotRunning) {
        m_process->terminate();
        if (!m_process->waitForFinished(15000)) {
            m_process->kill();
            m_process->waitForFinished(5000);
        }
    }
    removeProcessFile();
}

TrainingRun* TrainingRun::open(const QString& dir, QString* error, QObject* parent)
{
    const QDir folder(dir);
    const bool hasRun = folder.exists(QStringLiteral("run.json"));
    if (!folder.exists() || (!hasRun && !folder.exists(QLatin1String(kLogFile)))) {
        if (error)
            *error = folder.exists() ? tr("%1 is not a run folder (no run.json)").arg(dir)
                                     : tr("%1 does not exist").arg(dir);
        return nullptr;
    }
    TrainingSpec spec;
    spec.out = dir;
    if (hasRun) {
        QFile file(folder.filePath(QStringLiteral("run.json")));
        if (file.open(QIODevice::ReadOnly)) {
            const auto doc = QJsonDocument::fromJson(file.readAll());
            if (doc.isObject())
                spec = TrainingSpec::fromRunJson(doc.object(), QFileInfo(dir).absoluteFilePath());
        }
    }
    auto* run = new TrainingRun(spec, parent);
    run->loadRunJson();
    run->readMetrics();
    run->readLog(true);
    run->m_lastModified = QFileInfo(run->lastCheckpoint()).lastModified();
    run->m_bestModified = QFileInfo(run->bestCheckpoint()).lastModified();

    // A process this explorer (or an earlier session of it) left running?
    QFile processFile(run->processFilePath());
    if (processFile.open(QIODevice::ReadOnly)) {
        const auto o = QJsonDocument::fromJson(processFile.readAll()).object();
        processFile.close();
        const qint64 pid = static_cast<qint64>(o.value(QLatin1String("pid")).toDouble(0));
        if (pid > 0 && processAlive(pid, run->m_dir)) {
            run->m_pid = pid;
            run->m_startedAt = QDateTime::fromString(o.value(QLatin1String("started")).toString(), Qt::ISODate);
            for (const auto& v : o.value(QLatin1String("command")).toArray())
                run->m_commandLine << v.toString();
            run->m_status = RunStatus::Running;
            run->m_message = tr("running outside the explorer (pid %1)").arg(pid);
            run->m_timer.start();
            return run;
        }
        run->removeProcessFile();
    }
    run->inferStatusFromFiles();
    return run;
}

QString TrainingRun::name() const
{
    return QFileInfo(m_dir).fileName();
}

bool TrainingRun::isActive() const
{
    return m_status == RunStatus::Starting || m_status == RunStatus::Running || m_status == RunStatus::Stopping;
}

qint64 TrainingRun::totalSteps() const
{
    const qint64 fromMetrics = m_history.totalSteps();
    return fromMetrics > 0 ? fromMetrics : m_runTotalSteps;
}

QString TrainingRun::logPath() const
{
    return QDir(m_dir).filePath(QLatin1String(kLogFile));
}

QString TrainingRun::metricsPath() const
{
    return QDir(m_dir).filePath(QLatin1String(kMetricsFile));
}

QString TrainingRun::processFilePath() const
{
    return QDir(m_dir).filePath(QLatin1String(kProcessFile));
}

QString TrainingRun::lastCheckpoint() const
{
    const QString path = QDir(m_dir).filePath(QStringLiteral("last.pth.tar"));
    return QFileInfo::exists(path) ? path : QString();
}

QString TrainingRun::bestCheckpoint() const
{
    const QString path = QDir(m_dir).filePath(QStringLiteral("best.pth.tar"));
    return QFileInfo::exists(path) ? path : QString();
}

bool TrainingRun::start(const QString& fecProgram)
{
    if (isActive())
        return false;
    const QString problem = m_spec.validate();
    if (!problem.isEmpty()) {
        setStatus(RunStatus::Failed, problem);
        return false;
    }
    // A fresh run: what an earlier run logged there is not this run's (the trainer truncates the
    // file too, but only once it has read its data; the panel must not show the old lines meanwhile).
    QFile::remove(metricsPath());
    m_metrics.reset();
    m_history.clear();
    Q_EMIT historyReset();
    m_runTotalSteps = 0;
    m_totalEpochs = m_spec.epochs;
    return launch(fecProgram, m_spec.arguments());
}

bool TrainingRun::resume(const QString& fecProgram, int epochs)
{
    if (isActive())
        return false;
    if (lastCheckpoint().isEmpty()) {
        setStatus(m_status, tr("cannot resume: %1 has no last.pth.tar").arg(m_dir));
        return false;
    }
    QStringList args;
    if (m_spec.threads > 0)
        args << QStringLiteral("--threads") << QString::number(m_spec.threads);
    args << QStringLiteral("train") << QStringLiteral("--resume") << QStringLiteral("--out") << m_dir;
    if (epochs > 0)
        args << QStringLiteral("--epochs") << QString::number(epochs);
    return launch(fecProgram, args);
}

bool TrainingRun::launch(const QString& program, const QStringList& arguments)
{
    m_commandLine = QStringList{program} + arguments;
    m_final = RunFinalRecord();
    m_launchedAt = QDateTime::currentDateTime();
    m_exitCode = -1;
    m_pid = 0;
    m_stopRequested = false;
    m_killed = false;
    const QFileInfo exe(program);
    if (program.isEmpty() || !exe.isFile() || !exe.isExecutable()) {
        setStatus(RunStatus::Failed, program.isEmpty()
                                         ? tr("the fec executable was not found (next to the explorer or on PATH)")
                                         : tr("%1 is not an executable").arg(program));
        return false;
    }
    // Another process (a terminal's `fec train`, another explorer) owns the folder: refuse before
    // writing into its train.log and explorer-process.json. A stopped run keeps its status.
    if (const QString busy = runFolderBusyMessage(m_dir); !busy.isEmpty()) {
        setStatus(m_status == RunStatus::New ? RunStatus::Failed : m_status, busy);
        return false;
    }
    if (!QDir().mkpath(m_dir)) {
        setStatus(RunStatus::Failed, tr("cannot create the run folder %1").arg(m_dir));
        return false;
    }
    QFile log(logPath());
    if (log.open(QIODevice::Append | QIODevice::Text)) {
        log.write(QStringLiteral("==== %1 fec-explorer: %2\n")
                      .arg(QDateTime::currentDateTime().toString(Qt::ISODate), shellCommand(m_commandLine))
                      .toUtf8());
        log.close();
    }
    m_lastModified = QFileInfo(lastCheckpoint()).lastModified();
    m_bestModified = QFileInfo(bestCheckpoint()).lastModified();

    m_process = new QProcess(this);
    m_process->setProgram(program);
    m_process->setArguments(arguments);
    // Output goes to a file, not a pipe to the explorer: the run must outlive a detached explorer
    // (a closed pipe would kill it with SIGPIPE at its next line).
    m_process->setStandardInputFile(QProcess::nullDevice());
    m_process->setProcessChannelMode(QProcess::MergedChannels);
    m_process->setStandardOutputFile(logPath(), QIODevice::Append);
#ifdef Q_OS_UNIX
    // Its own session: Ctrl-C in the explorer's terminal or a closed terminal does not reach it.
    m_process->setChildProcessModifier([] { ::setsid(); });
#endif
    connect(m_process, &QProcess::started, this, [this] {
        m_pid = m_process->processId();
        m_startedAt = QDateTime::currentDateTime();
        writeProcessFile();
        if (m_status == RunStatus::Starting)
            setStatus(RunStatus::Running, tr("running (pid %1)").arg(m_pid));
    });
    connect(m_process, &QProcess::finished, this,
            [this](int code, QProcess::ExitStatus status) { onProcessFinished(code, static_cast<int>(status)); });
    connect(m_process, &QProcess::errorOccurred, this,
            [this](QProcess::ProcessError e) { onProcessError(static_cast<int>(e)); });
    setStatus(RunStatus::Starting, tr("starting %1").arg(QFileInfo(program).fileName()));
    m_timer.start();
    m_process->start();
    return m_process != nullptr;
}

void TrainingRun::stop()
{
    if (!isActive())
        return;
    if (m_status == RunStatus::Stopping) {
        m_killed = true;
        if (m_process)
            m_process->kill();
#ifdef Q_OS_UNIX
        else if (m_pid > 0)
            ::kill(static_cast<pid_t>(m_pid), SIGKILL);
#endif
        return;
    }
    m_stopRequested = true;
    if (m_process)
        m_process->terminate();  // SIGTERM
#ifdef Q_OS_UNIX
    else if (m_pid > 0)
        ::kill(static_cast<pid_t>(m_pid), SIGTERM);
#endif
    setStatus(RunStatus::Stopping, tr("stopping: finishing the step and writing last.pth.tar"));
}

void TrainingRun::detach()
{
    if (!m_process)
        return;
    disconnect(m_process, nullptr, this, nullptr);
    // Deliberately never deleted: ~QProcess kills a running child. The process writes only to
    // files, so it carries on when the explorer exits.
    m_process->setParent(nullptr);
#if defined(__SANITIZE_ADDRESS__)
    __lsan_ignore_object(m_process);  // kept alive on purpose, not a leak (asan preset)
#endif
    m_process = nullptr;
    m_timer.stop();
    m_message = tr("left running (pid %1); reopen the run folder to watch it").arg(m_pid);
    Q_EMIT changed();
}

void TrainingRun::poll()
{
    readMetrics();
    readLog();
    checkCheckpoints();
    if (m_totalEpochs == 0 || m_runTotalSteps == 0)
        loadRunJson();
    if (!m_process && isActive() && m_pid > 0 && !processAlive(m_pid, m_dir))
        finishExternal();
}

void TrainingRun::setStatus(RunStatus status, const QString& message)
{
    const bool statusChanged_ = status != m_status;
    m_status = status;
    m_message = message;
    if (statusChanged_)
        Q_EMIT statusChanged(status);
    Q_EMIT changed();
}

void TrainingRun::onProcessFinished(int exitCode, int exitStatus)
{
    // Whatever was written last (the final metrics, the "done" note).
    readMetrics();
    readLog();
    checkCheckpoints();
    loadRunJson();
    m_timer.stop();
    removeProcessFile();
    if (m_process) {
        m_process->deleteLater();
        m_process = nullptr;
    }
    dropStaleFinalRecord(m_launchedAt);
    const bool crashed = exitStatus == QProcess::CrashExit;
    m_exitCode = crashed ? -1 : exitCode;
    if (crashed || exitCode != 0) {
        if (m_stopRequested && !lastCheckpoint().isEmpty()) {
            setStatus(RunStatus::Stopped,
                      m_killed ? tr("killed before it could save; Resume continues from the last checkpoint")
                               : tr("stopped (signal); Resume continues from the last checkpoint"));
            return;
        }
        const QString how = crashed ? tr("crashed (signal %1)").arg(exitCode) : tr("exit code %1").arg(exitCode);
        // The trainer's own words when it recorded the failure, else the log's last line.
        const bool recorded =
            m_final.present && m_final.status == QLatin1String("failed") && !m_final.exitReason.isEmpty();
        // Refused because another process took the folder first: said from its lock, since the
        // owner keeps appending to the same train.log and the refusal need not be its last line.
        const long owner = recorded ? 0 : fec::train::runFolderOwner(m_dir.toStdString());
        const QString busy = owner != 0 && owner != m_pid ? runFolderBusyMessage(m_dir) : QString();
        const QString why = recorded ? m_final.exitReason : !busy.isEmpty() ? busy : lastMeaningfulLine(m_logTail);
        setStatus(RunStatus::Failed, why.isEmpty() ? how : QStringLiteral("%1: %2").arg(how, why));
        return;
    }
    if (applyFinalRecord())
        return;
    // No final record: an fec older than the record, or a program that is not `fec train`.
    if (m_stopRequested) {
        setStatus(RunStatus::Stopped, tr("stopped at step %1 (no final record)").arg(m_history.lastStep()));
        return;
    }
    setStatus(RunStatus::Finished, tr("finished (exit code 0; no final record)"));
}

void TrainingRun::onProcessError(int error)
{
    if (error != QProcess::FailedToStart || !m_process)
        return;  // crashes arrive through finished()
    const QString why = m_process->errorString();
    m_timer.stop();
    m_process->deleteLater();
    m_process = nullptr;
    removeProcessFile();
    setStatus(RunStatus::Failed, tr("could not start %1: %2").arg(m_commandLine.value(0), why));
}

void TrainingRun::finishExternal()
{
    readMetrics();
    readLog();
    checkCheckpoints();
    loadRunJson();
    m_timer.stop();
    removeProcessFile();
    dropStaleFinalRecord(m_startedAt);
    if (applyFinalRecord())
        return;
    if (m_stopRequested && !lastCheckpoint().isEmpty())
        setStatus(RunStatus::Stopped, tr("stopped; Resume continues from the last checkpoint"));
    else
        setStatus(RunStatus::Failed, tr("the process ended while not attached to the explorer (exit code unknown): %1")
                                         .arg(lastMeaningfulLine(m_logTail)));
}

void TrainingRun::dropStaleFinalRecord(const QDateTime& since)
{
    if (m_final.present && since.isValid() && !(m_final.finishedAt.isValid() && m_final.finishedAt >= since))
        m_final = RunFinalRecord();  // an earlier session's: this process ended without one
}

bool TrainingRun::applyFinalRecord()
{
    const auto& f = m_final;
    if (!f.present)
        return false;
    const QString best = f.bestMetricName.isEmpty()
                             ? QString()
                             : tr(", best %1 %2% (epoch %3)")
                                   .arg(f.bestMetricName == QLatin1String("ema_top1") ? tr("top-1 (EMA)") : tr("top-1"))
                                   .arg(f.bestMetric, 0, 'f', 2)
                                   .arg(f.bestEpoch + 1);
    if (f.status == QLatin1String("done"))
        setStatus(RunStatus::Finished, tr("done, %1 steps%2").arg(f.steps).arg(best));
    else if (f.status == QLatin1String("stopped"))
        setStatus(RunStatus::Stopped,
                  tr("stopped at step %1 of %2%3; Resume continues it").arg(f.steps).arg(f.totalSteps).arg(best));
    else if (f.status == QLatin1String("failed"))
        setStatus(RunStatus::Failed, tr("failed at step %1: %2").arg(f.steps).arg(f.exitReason));
    else  // a status this version does not know
        setStatus(lastCheckpoint().isEmpty() ? RunStatus::Failed : RunStatus::Stopped,
                  tr("ended (%1): %2").arg(f.status, f.exitReason));
    return true;
}

void TrainingRun::readMetrics()
{
    const auto update = m_metrics.poll();
    if (update.metrics.isEmpty() && !update.restarted)
        return;
    bool reset = update.restarted;
    if (update.restarted)
        m_history.clear();
    for (const auto& m : update.metrics)
        reset |= m_history.add(m);
    if (reset) {
        Q_EMIT historyReset();
    } else {
        for (const auto& m : update.metrics)
            Q_EMIT metricAdded(m);
    }
    Q_EMIT changed();
}

void TrainingRun::readLog(bool initial)
{
    QFile file(logPath());
    if (!file.open(QIODevice::ReadOnly))
        return;
    if (file.size() < m_logOffset) {
        m_logOffset = 0;
        m_logLines.clear();
    }
    bool skipFirst = false;
    if (initial && file.size() - m_logOffset > kInitialLogBytes) {
        m_logOffset = file.size() - kInitialLogBytes;
        skipFirst = true;
    }
    if (file.size() == m_logOffset || !file.seek(m_logOffset))
        return;
    const QByteArray bytes = file.read(file.size() - m_logOffset);
    m_logOffset += bytes.size();
    auto lines = m_logLines.feed(bytes);
    if (skipFirst && !lines.isEmpty())
        lines.removeFirst();
    if (lines.isEmpty())
        return;
    QStringList text;
    for (const auto& line : lines)
        text << QString::fromUtf8(line);
    m_logTail << text;
    if (m_logTail.size() > kLogTailLines)
        m_logTail.erase(m_logTail.begin(), m_logTail.begin() + (m_logTail.size() - kLogTailLines));
    Q_EMIT logAppended(text.join(QLatin1Char('\n')));
}

void TrainingRun::checkCheckpoints()
{
    const auto check = [this](const QString& path, QDateTime& seen) {
        if (path.isEmpty())
            return;
        const QDateTime modified = QFileInfo(path).lastModified();
        if (modified != seen) {
            seen = modified;
            Q_EMIT checkpointWritten(path);
        }
    };
    check(lastCheckpoint(), m_lastModified);
    check(bestCheckpoint(), m_bestModified);
}

void TrainingRun::inferStatusFromFiles()
{
    if (applyFinalRecord())
        return;
    // No final record: a run of an fec older than the record, or one that was killed or crashed.
    const qint64 total = totalSteps();
    const qint64 step = m_history.lastStep();
    if (total > 0 && step >= total) {
        m_status = RunStatus::Finished;
        m_message = tr("done, %1 steps (no final record)").arg(step);
    } else if (!lastCheckpoint().isEmpty()) {
        m_status = RunStatus::Stopped;
        m_message = tr("stopped at step %1 of %2; Resume continues it (no final record)").arg(step).arg(total);
    } else {
        m_status = RunStatus::Failed;
        const QString last = lastMeaningfulLine(m_logTail);
        m_message = last.isEmpty() ? tr("ended before its first checkpoint") : last;
    }
}

void TrainingRun::loadRunJson()
{
    QFile file(QDir(m_dir).filePath(QStringLiteral("run.json")));
    if (!file.open(QIODevice::ReadOnly))
        return;
    const auto run = QJsonDocument::fromJson(file.readAll()).object();
    m_runTotalSteps = static_cast<qint64>(run.value(QLatin1String("total_steps")).toDouble(0));
    m_totalEpochs = run.value(QLatin1String("epochs")).toInt(m_totalEpochs);
    m_final = RunFinalRecord::fromRunJson(run);
}

void TrainingRun::writeProcessFile()
{
    // Another explorer's `fec train` may have taken the folder between the start's check and
    // now (ours is then refused by its lock): its process file stays, or no later session could
    // find that run again.
    QFile existing(processFilePath());
    if (existing.open(QIODevice::ReadOnly)) {
        const auto owner = static_cast<qint64>(
            QJsonDocument::fromJson(existing.readAll()).object().value(QStringLiteral("pid")).toDouble());
        existing.close();
        if (owner > 0 && owner != m_pid && processAlive(owner, m_dir))
            return;
    }
    QJsonObject o;
    o.insert(QStringLiteral("pid"), static_cast<double>(m_pid));
    o.insert(QStringLiteral("started"), m_startedAt.toString(Qt::ISODate));
    o.insert(QStringLiteral("command"), QJsonArray::fromStringList(m_commandLine));
    o.insert(QStringLiteral("explorer_pid"), static_cast<double>(QCoreApplication::applicationPid()));
    QSaveFile file(processFilePath());
    if (file.open(QIODevice::WriteOnly)) {
        file.write(QJsonDocument(o).toJson());
        file.commit();
    }
}

void TrainingRun::removeProcessFile()
{
    // Only ours: a refused start must not hide the folder's owner from a later session.
    QFile file(processFilePath());
    if (file.open(QIODevice::ReadOnly)) {
        const QJsonObject owner = QJsonDocument::fromJson(file.readAll()).object();
        const auto pid = static_cast<qint64>(owner.value(QStringLiteral("pid")).toDouble());
        file.close();
        if (pid != 0 && m_pid != 0 && pid != m_pid)
            return;
    }
    QFile::remove(processFilePath());
}

bool TrainingRun::processAlive(qint64 pid, const QString& dir)
{
#ifdef Q_OS_LINUX
    // Alive, not a zombie, and still `fec train` of this folder (pids are reused).
    QFile stat(QStringLiteral("/proc/%1/stat").arg(pid));
    if (!stat.open(QIODevice::ReadOnly))
        return false;
    const QByteArray text = stat.readAll();
    const qsizetype close = text.lastIndexOf(')');
    if (close < 0 || close + 2 >= text.size() || text.at(close + 2) == 'Z' || text.at(close + 2) == 'X')
        return false;
    QFile cmdline(QStringLiteral("/proc/%1/cmdline").arg(pid));
    if (!cmdline.open(QIODevice::ReadOnly))
        return false;
    const QString canonicalDir = QFileInfo(dir).canonicalFilePath();
    bool isTrain = false, isThisRun = false;
    for (const auto& arg : cmdline.readAll().split('\0')) {
        const QString a = QString::fromLocal8Bit(arg);
        isTrain |= a == QLatin1String("train");
        isThisRun |= !a.isEmpty() && QFileInfo(a).canonicalFilePath() == canonicalDir;
    }
    return isTrain && isThisRun;
#elif defined(Q_OS_UNIX)
    Q_UNUSED(dir);
    return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
#else
    Q_UNUSED(pid);
    Q_UNUSED(dir);
    return false;
#endif
}

}  // namespace fec::ui
