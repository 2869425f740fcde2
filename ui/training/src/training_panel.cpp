#include "fec/ui/training_panel.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <QApplication>
#include <QCheckBox>
#include <QComboBox>
#include <QCoreApplication>
#include <QDateTime>
#include <QDesktopServices>
#include <QDir>
#include <QDoubleValidator>
#include <QElapsedTimer>
#include <QEventLoop>
#include <QFileDialog>
#include <QFileInfo>
#include <QFontDatabase>
#include <QFormLayout>
#include <QGridLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QJsonDocument>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QPlainTextEdit>
#include <QPointer>
#include <QProgressBar>
#include <QProgressDialog>
#include <QPushButton>
#include <QScrollArea>
#include <QSettings>
#include <QSpinBox>
#include <QSplitter>
#include <QStandardPaths>
#include <QTabWidget>
#include <QTableView>
#include <QTimer>
#include <QToolButton>
#include <QUrl>
#include <QVBoxLayout>

#include "fec/train/run_lock.h"
#include "fec/train/train_options.h"
#include "fec/ui/training_charts.h"
#include "fec/ui/training_run.h"
#include "fec/ui/training_run_model.h"

namespace fec::ui {

namespace {

const char* const kFormKey = "training/form";
const char* const kRunsKey = "training/runs";
const char* const kFollowKey = "training/follow";
const char* const kDirKey = "training/lastDir";

// "Start from" choices: a new model of a named architecture, a custom one, or a checkpoint.
const char* const kArchitectures[] = {"fec_small", "fec_base", "fec_large", "custom"};
const char* const kCheckpointChoice = "checkpoint";

// The help of a `fec train` flag, as `fec train --help` prints it (the options table's).
QString optionHelp(const char* flag)
{
    const auto* option = fec::train::findTrainOption(flag);
    return option ? QString::fromStdString(option->help) : QString();
}

QString formatNumber(double v)
{
    return QString::number(v, 'g', 10);
}

QString duration(double seconds)
{
    if (!(seconds >= 0) || seconds > 1e8)
        return QStringLiteral("?");
    const auto s = static_cast<qint64>(std::llround(seconds));
    if (s >= 3600)
        return QStringLiteral("%1:%2:%3")
            .arg(s / 3600)
            .arg((s / 60) % 60, 2, 10, QLatin1Char('0'))
            .arg(s % 60, 2, 10, QLatin1Char('0'));
    return QStringLiteral("%1:%2").arg(s / 60).arg(s % 60, 2, 10, QLatin1Char('0'));
}

// What `fec train --data` will make of a folder (the same checks, cheaply).
QString describeData(const QString& dir)
{
    if (dir.isEmpty())
        return {};
    const QDir d(dir);
    if (!d.exists())
        return QCoreApplication::translate("fec::ui::TrainingPanel", "not a folder");
    for (const char* name : {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"})
        if (d.exists(QLatin1String(name)))
            return QCoreApplication::translate("fec::ui::TrainingPanel",
                                               "Fashion-MNIST IDX files (validation: the test split)");
    const auto classes = [](const QDir& root) { return root.entryList(QDir::Dirs | QDir::NoDotAndDotDot).size(); };
    if (d.exists(QStringLiteral("train"))) {
        const int n = classes(QDir(d.filePath(QStringLiteral("train"))));
        const bool val = d.exists(QStringLiteral("val"));
        return QCoreApplication::translate("fec::ui::TrainingPanel", "image folder: %1 classes in train/%2")
            .arg(n)
            .arg(val ? QCoreApplication::translate("fec::ui::TrainingPanel", ", validation in val/") : QString());
    }
    const int n = classes(d);
    if (n > 0)
        return QCoreApplication::translate("fec::ui::TrainingPanel", "image folder: %1 classes").arg(n);
    return QCoreApplication::translate("fec::ui::TrainingPanel", "neither Fashion-MNIST IDX files nor class folders");
}

}  // namespace

struct TrainingPanel::Private {
    TrainingPanel* q = nullptr;
    QSettings* settings = nullptr;
    QString fecProgram;
    bool interactive = true;
    QString lastError;

    TrainingRunModel* model = nullptr;
    QPointer<TrainingRun> current;
    QList<QMetaObject::Connection> currentConnections;

    // The form.
    QLineEdit* data = nullptr;
    QLabel* dataKind = nullptr;
    QLineEdit* val = nullptr;
    QSpinBox* trainLimit = nullptr;
    QSpinBox* valLimit = nullptr;
    QLineEdit* valSplit = nullptr;
    QComboBox* startFrom = nullptr;
    QWidget* checkpointRow = nullptr;
    QLineEdit* checkpoint = nullptr;
    QComboBox* weights = nullptr;
    QLineEdit* freezeStages = nullptr;
    QWidget* customBox = nullptr;
    QLineEdit *layers = nullptr, *dims = nullptr, *heads = nullptr, *headDims = nullptr, *mlpRatios = nullptr,
              *proposals = nullptr;
    QLineEdit* out = nullptr;
    QSpinBox *size = nullptr, *epochs = nullptr, *maxSteps = nullptr, *batch = nullptr, *accum = nullptr,
             *seed = nullptr, *workers = nullptr, *threads = nullptr, *logEvery = nullptr;
    QLineEdit *lr = nullptr, *minLr = nullptr, *warmupLr = nullptr, *warmupEpochs = nullptr, *weightDecay = nullptr,
              *clip = nullptr, *ema = nullptr, *dropPath = nullptr, *smoothing = nullptr, *mixup = nullptr,
              *cutmix = nullptr, *reprob = nullptr, *hflip = nullptr, *cropScale = nullptr, *extra = nullptr;
    QCheckBox* noAugment = nullptr;
    QCheckBox* tensorboard = nullptr;
    QComboBox* device = nullptr;
    QComboBox* evalResize = nullptr;
    QPlainTextEdit* command = nullptr;
    QPushButton* startButton = nullptr;
    QLabel* formError = nullptr;
    bool loadingForm = false;

    // Runs.
    QTableView* table = nullptr;
    QPushButton *stopButton = nullptr, *resumeButton = nullptr, *openButton = nullptr, *removeButton = nullptr,
                *copyButton = nullptr, *lastButton = nullptr, *bestButton = nullptr, *folderButton = nullptr,
                *exportButton = nullptr;
    QCheckBox* follow = nullptr;
    QProgressBar* progress = nullptr;
    QLabel* progressText = nullptr;
    QTabWidget* tabs = nullptr;
    TrainingCharts* charts = nullptr;
    QPlainTextEdit* log = nullptr;

    QWidget* buildForm();
    QWidget* buildRuns();
    QLineEdit* numberEdit(double value, const QString& help);
    QSpinBox* spin(int min, int max, int value, const QString& help, int step = 1);
    QWidget* pathRow(QLineEdit* edit, bool folder, const QString& title);
    void updateForm();
    void updateActions();
    void updateProgress();
    void saveForm() const;
    void saveRuns() const;
    void restoreRuns();
    QString suggestedOut() const;
    void fail(const QString& message);
    void watch(TrainingRun* run);
    void select(TrainingRun* run);
};

QLineEdit* TrainingPanel::Private::numberEdit(double value, const QString& help)
{
    auto* e = new QLineEdit(formatNumber(value));
    auto* v = new QDoubleValidator(e);
    v->setNotation(QDoubleValidator::ScientificNotation);
    v->setLocale(QLocale::c());
    e->setValidator(v);
    e->setToolTip(QObject::tr("%1 (fec train default: %2)").arg(help, formatNumber(value)));
    e->setMaximumWidth(110);
    QObject::connect(e, &QLineEdit::textChanged, q, [this] { updateForm(); });
    return e;
}

QSpinBox* TrainingPanel::Private::spin(int min, int max, int value, const QString& help, int step)
{
    auto* s = new QSpinBox;
    s->setRange(min, max);
    s->setSingleStep(step);
    s->setValue(value);
    s->setToolTip(QObject::tr("%1 (fec train default: %2)").arg(help).arg(value));
    s->setMaximumWidth(110);
    QObject::connect(s, &QSpinBox::valueChanged, q, [this] { updateForm(); });
    return s;
}

QWidget* TrainingPanel::Private::pathRow(QLineEdit* edit, bool folder, const QString& title)
{
    auto* row = new QWidget;
    auto* layout = new QHBoxLayout(row);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(edit, 1);
    auto* browse = new QToolButton;
    browse->setText(QStringLiteral("…"));
    browse->setToolTip(title);
    layout->addWidget(browse);
    QObject::connect(edit, &QLineEdit::textChanged, q, [this] { updateForm(); });
    QObject::connect(browse, &QToolButton::clicked, q, [this, edit, folder, title] {
        const QString start = edit->text().isEmpty() && settings ? settings->value(kDirKey).toString() : edit->text();
        const QString path =
            folder
                ? QFileDialog::getExistingDirectory(q, title, start)
                : QFileDialog::getOpenFileName(
                      q, title, start, QObject::tr("Checkpoints (*.pth *.pth.tar *.pt *.tar *.ckpt);;All files (*)"));
        if (path.isEmpty())
            return;
        edit->setText(path);
        if (settings)
            settings->setValue(kDirKey, folder ? QFileInfo(path).absolutePath() : QFileInfo(path).absolutePath());
    });
    return row;
}

QWidget* TrainingPanel::Private::buildForm()
{
    const TrainingSpec defaults;
    auto* form = new QWidget;
    auto* column = new QVBoxLayout(form);

    auto* dataBox = new QGroupBox(QObject::tr("Data"));
    auto* dataForm = new QFormLayout(dataBox);
    data = new QLineEdit;
    data->setPlaceholderText(QObject::tr("image folder or Fashion-MNIST folder"));
    data->setToolTip(
        QObject::tr("ROOT/<class>/<image>, ROOT/train + ROOT/val, or a folder with the Fashion-MNIST IDX files"));
    dataForm->addRow(QObject::tr("Training data"), pathRow(data, true, QObject::tr("Training data folder")));
    dataKind = new QLabel;
    dataKind->setWordWrap(true);
    dataKind->setEnabled(false);
    dataForm->addRow(QString(), dataKind);
    val = new QLineEdit;
    val->setPlaceholderText(QObject::tr("default: ROOT/val or the Fashion-MNIST test split"));
    dataForm->addRow(QObject::tr("Validation"), pathRow(val, true, QObject::tr("Validation data folder")));
    valSplit = numberEdit(defaults.valSplit, QObject::tr("hold out this fraction of the training data instead"));
    trainLimit = spin(0, 100000000, 0, QObject::tr("use only N training images (0: all)"));
    valLimit = spin(0, 100000000, 0, QObject::tr("use only N validation images (0: all)"));
    auto* limits = new QWidget;
    auto* limitsLayout = new QHBoxLayout(limits);
    limitsLayout->setContentsMargins(0, 0, 0, 0);
    limitsLayout->addWidget(new QLabel(QObject::tr("train")));
    limitsLayout->addWidget(trainLimit);
    limitsLayout->addWidget(new QLabel(QObject::tr("val")));
    limitsLayout->addWidget(valLimit);
    limitsLayout->addStretch();
    dataForm->addRow(QObject::tr("Image limits"), limits);
    dataForm->addRow(QObject::tr("Validation split"), valSplit);
    column->addWidget(dataBox);

    auto* modelBox = new QGroupBox(QObject::tr("Model"));
    auto* modelForm = new QFormLayout(modelBox);
    startFrom = new QComboBox;
    for (const char* arch : kArchitectures)
        startFrom->addItem(QObject::tr("New %1").arg(QLatin1String(arch)), QLatin1String(arch));
    startFrom->addItem(QObject::tr("Fine-tune a checkpoint"), QLatin1String(kCheckpointChoice));
    QObject::connect(startFrom, &QComboBox::currentIndexChanged, q, [this] { updateForm(); });
    modelForm->addRow(QObject::tr("Start from"), startFrom);
    checkpoint = new QLineEdit;
    checkpoint->setPlaceholderText(QObject::tr("any checkpoint fec inspect reads"));
    checkpointRow = pathRow(checkpoint, false, QObject::tr("Base checkpoint"));
    modelForm->addRow(QObject::tr("Checkpoint"), checkpointRow);
    weights = new QComboBox;
    weights->addItems({QStringLiteral("auto"), QStringLiteral("state_dict"), QStringLiteral("ema")});
    weights->setToolTip(optionHelp("--weights"));
    QObject::connect(weights, &QComboBox::currentIndexChanged, q, [this] { updateForm(); });
    modelForm->addRow(QObject::tr("Weights"), weights);
    freezeStages = new QLineEdit;
    freezeStages->setPlaceholderText(QObject::tr("e.g. 0,1"));
    freezeStages->setToolTip(optionHelp("--freeze-stages"));
    QObject::connect(freezeStages, &QLineEdit::textChanged, q, [this] { updateForm(); });
    modelForm->addRow(QObject::tr("Frozen stages"), freezeStages);
    customBox = new QWidget;
    auto* custom = new QFormLayout(customBox);
    custom->setContentsMargins(0, 0, 0, 0);
    const auto stageEdit = [this, custom](QLineEdit*& edit, const QString& label, const QString& example) {
        edit = new QLineEdit;
        edit->setPlaceholderText(QObject::tr("fec_small's; e.g. %1").arg(example));
        edit->setToolTip(QObject::tr("four comma-separated values, one per stage"));
        QObject::connect(edit, &QLineEdit::textChanged, q, [this] { updateForm(); });
        custom->addRow(label, edit);
    };
    stageEdit(layers, QObject::tr("Layers"), QStringLiteral("1,1,2,1"));
    stageEdit(dims, QObject::tr("Dims"), QStringLiteral("32,64,128,192"));
    stageEdit(heads, QObject::tr("Heads"), QStringLiteral("2,2,4,4"));
    stageEdit(headDims, QObject::tr("Head dims"), QStringLiteral("16,16,16,16"));
    stageEdit(mlpRatios, QObject::tr("MLP ratios"), QStringLiteral("4,4,4,4"));
    stageEdit(proposals, QObject::tr("Proposals"), QStringLiteral("4,4,2,2"));
    modelForm->addRow(customBox);
    column->addWidget(modelBox);

    auto* runBox = new QGroupBox(QObject::tr("Run folder"));
    auto* runForm = new QFormLayout(runBox);
    out = new QLineEdit;
    out->setToolTip(QObject::tr("run.json, metrics.jsonl, train.log, TensorBoard events, last/best.pth.tar"));
    runForm->addRow(QObject::tr("Output"), pathRow(out, true, QObject::tr("Run folder")));
    column->addWidget(runBox);

    auto* hyper = new QGroupBox(QObject::tr("Hyper-parameters"));
    auto* grid = new QGridLayout(hyper);
    int cell = 0;
    const auto add = [&](const QString& label, QWidget* w) {
        auto* l = new QLabel(label);
        l->setBuddy(w);
        grid->addWidget(l, cell / 2, (cell % 2) * 2);
        grid->addWidget(w, cell / 2, (cell % 2) * 2 + 1);
        ++cell;
    };
    epochs = spin(1, 100000, defaults.epochs, optionHelp("--epochs"));
    add(QObject::tr("Epochs"), epochs);
    maxSteps = spin(0, 1000000000, static_cast<int>(defaults.maxSteps), optionHelp("--max-steps"));
    add(QObject::tr("Max steps"), maxSteps);
    batch = spin(1, 65536, defaults.batch, optionHelp("--batch"));
    add(QObject::tr("Batch"), batch);
    accum = spin(1, 4096, defaults.accum, optionHelp("--accum"));
    add(QObject::tr("Accumulation"), accum);
    lr = numberEdit(defaults.lr, optionHelp("--lr"));
    add(QObject::tr("Learning rate"), lr);
    minLr = numberEdit(defaults.minLr, optionHelp("--min-lr"));
    add(QObject::tr("Min lr"), minLr);
    warmupLr = numberEdit(defaults.warmupLr, optionHelp("--warmup-lr"));
    add(QObject::tr("Warm-up lr"), warmupLr);
    warmupEpochs = numberEdit(defaults.warmupEpochs, optionHelp("--warmup-epochs"));
    add(QObject::tr("Warm-up epochs"), warmupEpochs);
    weightDecay = numberEdit(defaults.weightDecay, optionHelp("--weight-decay"));
    add(QObject::tr("Weight decay"), weightDecay);
    size = spin(32, 4096, defaults.size, optionHelp("--size"), 32);
    add(QObject::tr("Input size"), size);
    seed = spin(0, std::numeric_limits<int>::max(), static_cast<int>(defaults.seed), optionHelp("--seed"));
    add(QObject::tr("Seed"), seed);
    workers = spin(0, 64, defaults.workers, optionHelp("--workers"));
    add(QObject::tr("Workers"), workers);
    threads = spin(0, 1024, 0, QObject::tr("CPU threads of fec (0: one per core)"));
    threads->setSpecialValueText(QObject::tr("auto"));
    add(QObject::tr("Threads"), threads);
    ema = numberEdit(defaults.ema, optionHelp("--ema"));
    add(QObject::tr("EMA"), ema);
    dropPath = numberEdit(defaults.dropPath, optionHelp("--drop-path"));
    add(QObject::tr("Drop path"), dropPath);
    smoothing = numberEdit(defaults.smoothing, optionHelp("--smoothing"));
    add(QObject::tr("Smoothing"), smoothing);
    mixup = numberEdit(defaults.mixup, optionHelp("--mixup"));
    add(QObject::tr("MixUp"), mixup);
    cutmix = numberEdit(defaults.cutmix, optionHelp("--cutmix"));
    add(QObject::tr("CutMix"), cutmix);
    reprob = numberEdit(defaults.reprob, optionHelp("--reprob"));
    add(QObject::tr("Random erasing"), reprob);
    hflip = numberEdit(defaults.hflip, optionHelp("--hflip"));
    add(QObject::tr("Flip"), hflip);
    cropScale = numberEdit(defaults.cropScale, optionHelp("--crop-scale"));
    add(QObject::tr("Crop scale"), cropScale);
    clip = numberEdit(defaults.clip, optionHelp("--clip"));
    add(QObject::tr("Gradient clip"), clip);
    logEvery = spin(1, 1000000, defaults.logEvery, optionHelp("--log-every"));
    add(QObject::tr("Log every"), logEvery);
    device = new QComboBox;
    device->addItems({QStringLiteral("cpu"), QStringLiteral("cuda"), QStringLiteral("auto")});
    device->setToolTip(QObject::tr("%1 (fec train default: %2)").arg(optionHelp("--device"), defaults.device));
    QObject::connect(device, &QComboBox::currentIndexChanged, q, [this] { updateForm(); });
    add(QObject::tr("Device"), device);
    evalResize = new QComboBox;
    evalResize->addItem(QObject::tr("data set's choice"), QString());
    evalResize->addItem(QStringLiteral("squash"), QStringLiteral("squash"));
    evalResize->addItem(QStringLiteral("crop"), QStringLiteral("crop"));
    evalResize->setToolTip(optionHelp("--eval-resize"));
    QObject::connect(evalResize, &QComboBox::currentIndexChanged, q, [this] { updateForm(); });
    add(QObject::tr("Eval resize"), evalResize);
    noAugment = new QCheckBox(QObject::tr("No augmentation"));
    noAugment->setToolTip(QObject::tr("no crop, flip, erasing or mixing: resize only"));
    QObject::connect(noAugment, &QCheckBox::toggled, q, [this] { updateForm(); });
    grid->addWidget(noAugment, cell / 2 + 1, 0, 1, 2);
    tensorboard = new QCheckBox(QObject::tr("TensorBoard events"));
    tensorboard->setChecked(defaults.tensorboard);
    tensorboard->setToolTip(
        QObject::tr("write events.out.tfevents.* (off: %1)").arg(QStringLiteral("--no-tensorboard")));
    QObject::connect(tensorboard, &QCheckBox::toggled, q, [this] { updateForm(); });
    grid->addWidget(tensorboard, cell / 2 + 1, 2, 1, 2);
    extra = new QLineEdit;
    extra->setPlaceholderText(QObject::tr("more fec train flags, e.g. --eval-resize crop"));
    QObject::connect(extra, &QLineEdit::textChanged, q, [this] { updateForm(); });
    grid->addWidget(new QLabel(QObject::tr("More flags")), cell / 2 + 2, 0);
    grid->addWidget(extra, cell / 2 + 2, 1, 1, 3);
    column->addWidget(hyper);

    command = new QPlainTextEdit;
    command->setReadOnly(true);
    command->setMaximumHeight(70);
    command->setToolTip(QObject::tr("The command Start runs (select and copy to run it elsewhere)"));
    QFont mono = QFontDatabase::systemFont(QFontDatabase::FixedFont);
    command->setFont(mono);
    column->addWidget(command);

    auto* buttons = new QHBoxLayout;
    auto* reset = new QPushButton(QObject::tr("Defaults"));
    reset->setToolTip(QObject::tr("Reset the hyper-parameters to fec train's defaults (data and folders stay)"));
    QObject::connect(reset, &QPushButton::clicked, q, [this] {
        TrainingSpec s;
        const TrainingSpec current = q->spec();
        s.data = current.data;
        s.val = current.val;
        s.checkpoint = current.checkpoint;
        s.out = current.out;
        q->setSpec(s);
    });
    buttons->addWidget(reset);
    buttons->addStretch();
    startButton = new QPushButton(QObject::tr("Start Training"));
    startButton->setDefault(true);
    QObject::connect(startButton, &QPushButton::clicked, q, [this] { q->startRun(); });
    buttons->addWidget(startButton);
    column->addLayout(buttons);
    formError = new QLabel;
    formError->setWordWrap(true);
    formError->setStyleSheet(QStringLiteral("color: #d55e00"));
    formError->setTextInteractionFlags(Qt::TextSelectableByMouse);
    column->addWidget(formError);
    column->addStretch();

    auto* scroll = new QScrollArea;
    scroll->setWidget(form);
    scroll->setWidgetResizable(true);
    scroll->setFrameShape(QFrame::NoFrame);
    scroll->setMinimumWidth(form->sizeHint().width() + 20);
    return scroll;
}

QWidget* TrainingPanel::Private::buildRuns()
{
    auto* box = new QWidget;
    auto* column = new QVBoxLayout(box);
    column->setContentsMargins(0, 0, 0, 0);

    auto* buttons = new QHBoxLayout;
    const auto button = [&](const QString& text, const QString& tip) {
        auto* b = new QPushButton(text);
        b->setToolTip(tip);
        buttons->addWidget(b);
        return b;
    };
    stopButton =
        button(QObject::tr("Stop"), QObject::tr("SIGTERM: the run finishes its step, writes last.pth.tar and exits"));
    resumeButton = button(QObject::tr("Resume"), QObject::tr("fec train --resume: continue from last.pth.tar"));
    lastButton = button(QObject::tr("Open Last"), QObject::tr("Open last.pth.tar in the explorer"));
    bestButton = button(QObject::tr("Open Best"), QObject::tr("Open best.pth.tar in the explorer"));
    follow = new QCheckBox(QObject::tr("Follow"));
    follow->setToolTip(QObject::tr("Open each new last.pth.tar of the selected run in the explorer: the pyramid of the "
                                   "current image follows training"));
    buttons->addWidget(follow);
    buttons->addStretch();
    openButton =
        button(QObject::tr("Add Run Folder…"), QObject::tr("List an existing run folder (run.json, metrics.jsonl)"));
    copyButton = button(QObject::tr("Copy Settings"), QObject::tr("Put the selected run's settings into the form"));
    folderButton = button(QObject::tr("Show Folder"), QObject::tr("Open the run folder in the file manager"));
    removeButton = button(QObject::tr("Remove"), QObject::tr("Remove the run from the list (its folder stays)"));
    column->addLayout(buttons);

    table = new QTableView;
    table->setModel(model);
    table->setSelectionBehavior(QAbstractItemView::SelectRows);
    table->setSelectionMode(QAbstractItemView::SingleSelection);
    table->verticalHeader()->hide();
    table->horizontalHeader()->setStretchLastSection(true);
    table->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
    table->horizontalHeader()->setSectionResizeMode(TrainingRunModel::Message, QHeaderView::Stretch);
    table->setAlternatingRowColors(true);
    table->setWordWrap(false);
    QObject::connect(table->selectionModel(), &QItemSelectionModel::currentRowChanged, q,
                     [this](const QModelIndex& index) { select(model->run(index.row())); });

    auto* progressRow = new QHBoxLayout;
    progress = new QProgressBar;
    progress->setRange(0, 1);
    progress->setValue(0);
    progress->setFormat(QObject::tr("%v / %m steps"));
    progressRow->addWidget(progress, 2);
    progressText = new QLabel;
    progressText->setTextInteractionFlags(Qt::TextSelectableByMouse);
    progressRow->addWidget(progressText, 3);

    tabs = new QTabWidget;
    auto* chartsPage = new QWidget;
    auto* chartsLayout = new QVBoxLayout(chartsPage);
    chartsLayout->setContentsMargins(2, 2, 2, 2);
    charts = new TrainingCharts;
    chartsLayout->addWidget(charts, 1);
    auto* exportRow = new QHBoxLayout;
    exportRow->addStretch();
    exportButton = new QPushButton(QObject::tr("Export Charts…"));
    exportRow->addWidget(exportButton);
    chartsLayout->addLayout(exportRow);
    tabs->addTab(chartsPage, QObject::tr("Charts"));
    log = new QPlainTextEdit;
    log->setReadOnly(true);
    log->setMaximumBlockCount(5000);
    log->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
    log->setLineWrapMode(QPlainTextEdit::NoWrap);
    tabs->addTab(log, QObject::tr("Log"));

    auto* split = new QSplitter(Qt::Vertical);
    auto* top = new QWidget;
    auto* topLayout = new QVBoxLayout(top);
    topLayout->setContentsMargins(0, 0, 0, 0);
    topLayout->addWidget(table);
    topLayout->addLayout(progressRow);
    split->addWidget(top);
    split->addWidget(tabs);
    split->setStretchFactor(0, 1);
    split->setStretchFactor(1, 3);
    column->addWidget(split, 1);

    QObject::connect(stopButton, &QPushButton::clicked, q, [this] { q->stopRun(current); });
    QObject::connect(resumeButton, &QPushButton::clicked, q, [this] { q->resumeRun(current); });
    QObject::connect(lastButton, &QPushButton::clicked, q, [this] { q->probe(current, false); });
    QObject::connect(bestButton, &QPushButton::clicked, q, [this] { q->probe(current, true); });
    QObject::connect(follow, &QCheckBox::toggled, q, [this](bool on) {
        if (settings)
            settings->setValue(kFollowKey, on);
        if (on && current && !current->lastCheckpoint().isEmpty())
            q->probe(current, false);
    });
    QObject::connect(openButton, &QPushButton::clicked, q, [this] {
        const QString dir = QFileDialog::getExistingDirectory(
            q, QObject::tr("Add run folder"), settings ? settings->value(kDirKey).toString() : QString());
        if (!dir.isEmpty())
            q->openRunFolder(dir);
    });
    QObject::connect(copyButton, &QPushButton::clicked, q, [this] {
        if (current)
            q->setSpec(current->spec());
    });
    QObject::connect(folderButton, &QPushButton::clicked, q, [this] {
        if (current)
            QDesktopServices::openUrl(QUrl::fromLocalFile(current->dir()));
    });
    QObject::connect(removeButton, &QPushButton::clicked, q, [this] {
        if (!current)
            return;
        if (!model->removeRun(model->rowOf(current))) {
            fail(QObject::tr("Stop %1 before removing it from the list.").arg(current->name()));
            return;
        }
        saveRuns();
    });
    QObject::connect(exportButton, &QPushButton::clicked, q, [this] {
        const QString base = current ? QDir(current->dir()).filePath(QStringLiteral("curves.png")) : QString();
        const QString path = QFileDialog::getSaveFileName(q, QObject::tr("Export charts"), base,
                                                          QObject::tr("PNG image (*.png);;PDF document (*.pdf)"));
        if (path.isEmpty())
            return;
        QString error;
        if (!charts->exportTo(path, &error))
            fail(error);
    });
    return box;
}

void TrainingPanel::Private::updateForm()
{
    if (loadingForm)
        return;
    const QString choice = startFrom->currentData().toString();
    const bool fromCheckpoint = choice == QLatin1String(kCheckpointChoice);
    checkpointRow->setEnabled(fromCheckpoint);
    checkpoint->setEnabled(fromCheckpoint);
    weights->setEnabled(fromCheckpoint);
    freezeStages->setEnabled(fromCheckpoint);
    customBox->setVisible(choice == QLatin1String("custom"));
    dataKind->setText(describeData(data->text().trimmed()));
    out->setPlaceholderText(suggestedOut());
    const TrainingSpec s = q->spec();
    TrainingSpec shown = s;
    if (shown.out.isEmpty())
        shown.out = suggestedOut();
    const QString program = fecProgram.isEmpty() ? QStringLiteral("fec") : fecProgram;
    command->setPlainText(shellCommand(QStringList{program} + shown.arguments()));
}

QString TrainingPanel::Private::suggestedOut() const
{
    const QString root = QDir::home().filePath(QStringLiteral("fec-runs"));
    QString dataName = QFileInfo(data->text().trimmed()).fileName();
    if (dataName.isEmpty())
        dataName = QStringLiteral("run");
    const QString choice = startFrom->currentData().toString();
    const QString model = choice == QLatin1String(kCheckpointChoice) ? QStringLiteral("ft") : choice;
    return QDir(root).filePath(
        QStringLiteral("%1-%2-%3")
            .arg(dataName, model, QDateTime::currentDateTime().toString(QStringLiteral("yyyyMMdd-HHmm"))));
}

void TrainingPanel::Private::updateActions()
{
    TrainingRun* r = current;
    const bool active = r && r->isActive();
    stopButton->setEnabled(active);
    stopButton->setText(r && r->status() == RunStatus::Stopping ? QObject::tr("Kill") : QObject::tr("Stop"));
    stopButton->setToolTip(r && r->status() == RunStatus::Stopping
                               ? QObject::tr("SIGKILL: end it now (without saving)")
                               : QObject::tr("SIGTERM: the run finishes its step, writes last.pth.tar and exits"));
    resumeButton->setEnabled(r && !active && !r->lastCheckpoint().isEmpty());
    lastButton->setEnabled(r && !r->lastCheckpoint().isEmpty());
    bestButton->setEnabled(r && !r->bestCheckpoint().isEmpty());
    copyButton->setEnabled(r != nullptr);
    folderButton->setEnabled(r != nullptr);
    removeButton->setEnabled(r && !(active && r->isAttached()));
    exportButton->setEnabled(r != nullptr);
}

void TrainingPanel::Private::updateProgress()
{
    TrainingRun* r = current;
    if (!r) {
        progress->setRange(0, 1);
        progress->setValue(0);
        progressText->clear();
        return;
    }
    const auto& h = r->history();
    const qint64 total = r->totalSteps();
    // QProgressBar takes ints; runs of more than 2^31 steps are not a concern.
    progress->setRange(0, static_cast<int>(std::max<qint64>(total, 1)));
    progress->setValue(static_cast<int>(std::min(h.lastStep(), std::max<qint64>(total, 1))));
    QStringList parts;
    if (h.lastEpoch() >= 0)
        parts << (r->totalEpochs() > 0 ? QObject::tr("epoch %1/%2").arg(h.lastEpoch() + 1).arg(r->totalEpochs())
                                       : QObject::tr("epoch %1").arg(h.lastEpoch() + 1));
    if (r->isActive()) {
        const double eta = h.etaSeconds();
        if (eta >= 0)
            parts << QObject::tr("ETA %1").arg(duration(eta));
    }
    if (const auto* t = h.latestTrain(); t && t->imagesPerSecond > 0)
        parts << QObject::tr("%1 images/s").arg(t->imagesPerSecond, 0, 'f', 1);
    if (h.bestTop1() >= 0)
        parts << QObject::tr("best top-1 %1%").arg(h.bestTop1(), 0, 'f', 2);
    parts << runStatusName(r->status());
    progressText->setText(parts.join(QStringLiteral(" · ")));
    progressText->setToolTip(r->message());
}

void TrainingPanel::Private::saveForm() const
{
    if (settings)
        settings->setValue(kFormKey,
                           QString::fromUtf8(QJsonDocument(q->spec().toJson()).toJson(QJsonDocument::Compact)));
}

void TrainingPanel::Private::saveRuns() const
{
    if (settings)
        settings->setValue(kRunsKey, model->dirs());
}

void TrainingPanel::Private::restoreRuns()
{
    if (!settings)
        return;
    for (const auto& dir : settings->value(kRunsKey).toStringList()) {
        QString error;
        if (auto* run = TrainingRun::open(dir, &error)) {
            model->addRun(run);
            watch(run);
        }
    }
}

void TrainingPanel::Private::fail(const QString& message)
{
    lastError = message;
    formError->setText(message);
    Q_EMIT q->errorOccurred(message);
}

void TrainingPanel::Private::watch(TrainingRun* run)
{
    QObject::connect(run, &TrainingRun::changed, q, [this, run] {
        if (run == current) {
            updateActions();
            updateProgress();
            charts->setTotals(run->totalSteps(), run->totalEpochs());
        }
    });
    QObject::connect(run, &TrainingRun::statusChanged, q, [this, run](RunStatus status) {
        if (status == RunStatus::Failed && run == current)
            tabs->setCurrentWidget(log);
    });
    QObject::connect(run, &TrainingRun::checkpointWritten, q, [this, run](const QString& path) {
        if (run == current && follow->isChecked() && path == run->lastCheckpoint())
            Q_EMIT q->openCheckpointRequested(path);
    });
}

void TrainingPanel::Private::select(TrainingRun* run)
{
    if (run == current && run)
        return;
    for (const auto& c : std::as_const(currentConnections))
        QObject::disconnect(c);
    currentConnections.clear();
    current = run;
    log->clear();
    if (run) {
        charts->setHistory(&run->history(), run->totalSteps(), run->totalEpochs());
        log->setPlainText(run->logTail().join(QLatin1Char('\n')));
        log->moveCursor(QTextCursor::End);
        currentConnections << QObject::connect(run, &TrainingRun::metricAdded, charts, &TrainingCharts::appendMetric);
        currentConnections << QObject::connect(run, &TrainingRun::historyReset, charts, [this, run] {
            charts->setHistory(&run->history(), run->totalSteps(), run->totalEpochs());
        });
        currentConnections << QObject::connect(run, &TrainingRun::logAppended, log,
                                               [this](const QString& text) { log->appendPlainText(text); });
        const int row = model->rowOf(run);
        if (table->currentIndex().row() != row)
            table->setCurrentIndex(model->index(row, 0));
    } else {
        charts->setHistory(nullptr);
    }
    updateActions();
    updateProgress();
    Q_EMIT q->currentRunChanged(run);
}

TrainingPanel::TrainingPanel(QSettings* settings, QWidget* parent) : QWidget(parent), d(std::make_unique<Private>())
{
    d->q = this;
    d->settings = settings;
    d->fecProgram = findFecProgram();
    d->model = new TrainingRunModel(this);

    auto* layout = new QHBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    auto* split = new QSplitter(Qt::Horizontal);
    split->addWidget(d->buildForm());
    split->addWidget(d->buildRuns());
    split->setStretchFactor(0, 0);
    split->setStretchFactor(1, 1);
    layout->addWidget(split);

    if (settings) {
        const auto doc = QJsonDocument::fromJson(settings->value(kFormKey).toString().toUtf8());
        if (doc.isObject())
            setSpec(TrainingSpec::fromJson(doc.object()));
        d->follow->setChecked(settings->value(kFollowKey, false).toBool());
    }
    d->updateForm();
    d->restoreRuns();
    if (d->model->runCount() > 0)
        d->select(d->model->run(d->model->runCount() - 1));
    d->updateActions();
    connect(d->model, &QAbstractItemModel::rowsRemoved, this, [this] {
        if (!d->current)
            d->select(d->model->run(d->model->runCount() - 1));
    });
}

TrainingPanel::~TrainingPanel()
{
    // No settings here: the owner of `settings` may already have destroyed them (prepareClose()
    // and every change of the list save instead).
    for (const auto& c : std::as_const(d->currentConnections))
        QObject::disconnect(c);
    // The runs (children of the model) stop their processes as they are destroyed.
}

QString TrainingPanel::findFecProgram()
{
    const QString here = QDir(QCoreApplication::applicationDirPath()).filePath(QStringLiteral("fec"));
    if (QFileInfo(here).isExecutable() && QFileInfo(here).isFile())
        return here;
    return QStandardPaths::findExecutable(QStringLiteral("fec"));
}

void TrainingPanel::setFecProgram(const QString& path)
{
    d->fecProgram = path;
    d->updateForm();
}

QString TrainingPanel::fecProgram() const
{
    return d->fecProgram;
}

void TrainingPanel::setInteractive(bool interactive)
{
    d->interactive = interactive;
}

TrainingSpec TrainingPanel::spec() const
{
    TrainingSpec s;
    const auto number = [](QLineEdit* e, double fallback) {
        bool ok = false;
        const double v = QLocale::c().toDouble(e->text().trimmed(), &ok);
        return ok ? v : fallback;
    };
    s.data = d->data->text().trimmed();
    s.val = d->val->text().trimmed();
    s.valSplit = number(d->valSplit, s.valSplit);
    s.trainLimit = d->trainLimit->value();
    s.valLimit = d->valLimit->value();
    s.out = d->out->text().trimmed();
    const QString choice = d->startFrom->currentData().toString();
    if (choice == QLatin1String(kCheckpointChoice)) {
        s.checkpoint = d->checkpoint->text().trimmed();
        s.weights = d->weights->currentText();
        s.freezeStages = d->freezeStages->text().trimmed();
    } else {
        s.arch = choice;
    }
    if (choice == QLatin1String("custom")) {
        s.layers = d->layers->text().trimmed();
        s.dims = d->dims->text().trimmed();
        s.heads = d->heads->text().trimmed();
        s.headDims = d->headDims->text().trimmed();
        s.mlpRatios = d->mlpRatios->text().trimmed();
        s.proposals = d->proposals->text().trimmed();
    }
    s.size = d->size->value();
    s.epochs = d->epochs->value();
    s.maxSteps = d->maxSteps->value();
    s.batch = d->batch->value();
    s.accum = d->accum->value();
    s.lr = number(d->lr, s.lr);
    s.minLr = number(d->minLr, s.minLr);
    s.warmupLr = number(d->warmupLr, s.warmupLr);
    s.warmupEpochs = number(d->warmupEpochs, s.warmupEpochs);
    s.weightDecay = number(d->weightDecay, s.weightDecay);
    s.clip = number(d->clip, s.clip);
    s.ema = number(d->ema, s.ema);
    s.dropPath = number(d->dropPath, s.dropPath);
    s.smoothing = number(d->smoothing, s.smoothing);
    s.mixup = number(d->mixup, s.mixup);
    s.cutmix = number(d->cutmix, s.cutmix);
    s.reprob = number(d->reprob, s.reprob);
    s.hflip = number(d->hflip, s.hflip);
    s.cropScale = number(d->cropScale, s.cropScale);
    s.evalResize = d->evalResize->currentData().toString();
    s.noAugment = d->noAugment->isChecked();
    s.tensorboard = d->tensorboard->isChecked();
    s.seed = static_cast<quint64>(d->seed->value());
    s.workers = d->workers->value();
    s.threads = d->threads->value();
    s.logEvery = d->logEvery->value();
    s.device = d->device->currentText();
    s.extraArguments = d->extra->text().trimmed();
    return s;
}

void TrainingPanel::setSpec(const TrainingSpec& s)
{
    d->loadingForm = true;
    d->data->setText(s.data);
    d->val->setText(s.val);
    d->valSplit->setText(formatNumber(s.valSplit));
    d->trainLimit->setValue(static_cast<int>(std::min<qint64>(s.trainLimit, d->trainLimit->maximum())));
    d->valLimit->setValue(static_cast<int>(std::min<qint64>(s.valLimit, d->valLimit->maximum())));
    d->out->setText(s.out);
    const QString choice = s.checkpoint.isEmpty() ? s.arch : QString::fromLatin1(kCheckpointChoice);
    const int index = d->startFrom->findData(choice);
    d->startFrom->setCurrentIndex(index >= 0 ? index : 0);
    d->checkpoint->setText(s.checkpoint);
    const int weightsIndex = d->weights->findText(s.weights);
    d->weights->setCurrentIndex(weightsIndex >= 0 ? weightsIndex : 0);
    d->freezeStages->setText(s.freezeStages);
    d->layers->setText(s.layers);
    d->dims->setText(s.dims);
    d->heads->setText(s.heads);
    d->headDims->setText(s.headDims);
    d->mlpRatios->setText(s.mlpRatios);
    d->proposals->setText(s.proposals);
    d->size->setValue(s.size);
    d->epochs->setValue(s.epochs);
    d->maxSteps->setValue(static_cast<int>(std::min<qint64>(s.maxSteps, d->maxSteps->maximum())));
    d->batch->setValue(s.batch);
    d->accum->setValue(s.accum);
    d->lr->setText(formatNumber(s.lr));
    d->minLr->setText(formatNumber(s.minLr));
    d->warmupLr->setText(formatNumber(s.warmupLr));
    d->warmupEpochs->setText(formatNumber(s.warmupEpochs));
    d->weightDecay->setText(formatNumber(s.weightDecay));
    d->clip->setText(formatNumber(s.clip));
    d->ema->setText(formatNumber(s.ema));
    d->dropPath->setText(formatNumber(s.dropPath));
    d->smoothing->setText(formatNumber(s.smoothing));
    d->mixup->setText(formatNumber(s.mixup));
    d->cutmix->setText(formatNumber(s.cutmix));
    d->reprob->setText(formatNumber(s.reprob));
    d->hflip->setText(formatNumber(s.hflip));
    d->cropScale->setText(formatNumber(s.cropScale));
    const int resizeIndex = d->evalResize->findData(s.evalResize);
    d->evalResize->setCurrentIndex(resizeIndex >= 0 ? resizeIndex : 0);
    d->noAugment->setChecked(s.noAugment);
    d->tensorboard->setChecked(s.tensorboard);
    d->seed->setValue(static_cast<int>(std::min<quint64>(s.seed, static_cast<quint64>(d->seed->maximum()))));
    d->workers->setValue(s.workers);
    d->threads->setValue(s.threads);
    d->logEvery->setValue(s.logEvery);
    const int deviceIndex = d->device->findText(s.device);
    d->device->setCurrentIndex(deviceIndex >= 0 ? deviceIndex : 0);
    d->extra->setText(s.extraArguments);
    d->loadingForm = false;
    d->updateForm();
}

TrainingRunModel* TrainingPanel::model() const
{
    return d->model;
}

TrainingCharts* TrainingPanel::charts() const
{
    return d->charts;
}

TrainingRun* TrainingPanel::currentRun() const
{
    return d->current;
}

void TrainingPanel::setCurrentRun(TrainingRun* run)
{
    d->select(run);
}

TrainingRun* TrainingPanel::startRun()
{
    d->formError->clear();
    d->lastError.clear();
    TrainingSpec s = spec();
    if (s.out.isEmpty()) {
        s.out = d->suggestedOut();
        d->out->setText(s.out);
    }
    const QString problem = s.validate();
    if (!problem.isEmpty()) {
        d->fail(problem);
        return nullptr;
    }
    if (d->fecProgram.isEmpty()) {
        d->fail(tr("The fec executable was not found next to the explorer or on PATH."));
        return nullptr;
    }
    TrainingRun* listed = d->model->findByDir(s.out);
    if (listed && listed->isActive()) {
        d->fail(tr("%1 is already running.").arg(listed->name()));
        return nullptr;
    }
    // Owned by a process this dock does not drive (a terminal's `fec train`, another explorer):
    // refused before offering to replace or resume it.
    if (const long owner = fec::train::runFolderOwner(s.out.toStdString()); owner != 0) {
        d->fail(QString::fromStdString(fec::train::RunFolderBusy(s.out.toStdString(), std::max(owner, 0L)).what()));
        return nullptr;
    }
    const QDir outDir(s.out);
    if (outDir.exists(QStringLiteral("run.json")) || outDir.exists(QStringLiteral("last.pth.tar"))) {
        if (!d->interactive) {
            d->fail(tr("%1 already holds a run: resume it, or choose another folder.").arg(s.out));
            return nullptr;
        }
        QMessageBox box(QMessageBox::Question, tr("Run folder in use"),
                        tr("%1 already holds a run.").arg(QDir::toNativeSeparators(s.out)), QMessageBox::NoButton,
                        this);
        box.setInformativeText(tr("Start a new run there (its metrics and checkpoints are replaced), or continue the "
                                  "existing run from its last checkpoint?"));
        auto* overwrite = box.addButton(tr("Start New Run"), QMessageBox::DestructiveRole);
        auto* resume = box.addButton(tr("Resume It"), QMessageBox::AcceptRole);
        box.addButton(QMessageBox::Cancel);
        box.exec();
        if (box.clickedButton() == resume) {
            TrainingRun* run = listed ? listed : openRunFolder(s.out);
            return run && resumeRun(run) ? run : nullptr;
        }
        if (box.clickedButton() != overwrite)
            return nullptr;
    }
    if (listed)
        d->model->removeRun(d->model->rowOf(listed));
    auto* run = new TrainingRun(s);
    d->model->addRun(run);
    d->watch(run);
    d->select(run);
    d->saveForm();
    d->saveRuns();
    if (!run->start(d->fecProgram)) {
        d->fail(run->message());
        return run;
    }
    d->tabs->setCurrentIndex(0);
    return run;
}

TrainingRun* TrainingPanel::openRunFolder(const QString& dir)
{
    if (auto* listed = d->model->findByDir(dir)) {
        d->select(listed);
        return listed;
    }
    QString error;
    auto* run = TrainingRun::open(dir, &error);
    if (!run) {
        d->fail(error);
        return nullptr;
    }
    d->model->addRun(run);
    d->watch(run);
    d->select(run);
    d->saveRuns();
    if (d->settings)
        d->settings->setValue(kDirKey, QFileInfo(run->dir()).absolutePath());
    return run;
}

bool TrainingPanel::stopRun(TrainingRun* run)
{
    if (!run || !run->isActive())
        return false;
    run->stop();
    d->updateActions();
    return true;
}

bool TrainingPanel::resumeRun(TrainingRun* run)
{
    if (!run || run->isActive())
        return false;
    if (d->fecProgram.isEmpty()) {
        d->fail(tr("The fec executable was not found next to the explorer or on PATH."));
        return false;
    }
    // A finished run continues only when the form asks for more epochs than it had.
    const int epochs =
        d->epochs->value() > run->totalEpochs() && run->status() == RunStatus::Finished ? d->epochs->value() : 0;
    if (run->status() == RunStatus::Finished && epochs == 0) {
        d->fail(tr("%1 has finished: set more epochs than its %2 in the form to continue it.")
                    .arg(run->name())
                    .arg(run->totalEpochs()));
        return false;
    }
    d->select(run);
    if (!run->resume(d->fecProgram, epochs)) {
        d->fail(run->message());
        return false;
    }
    d->formError->clear();
    return true;
}

bool TrainingPanel::probe(TrainingRun* run, bool best)
{
    if (!run)
        return false;
    const QString path = best ? run->bestCheckpoint() : run->lastCheckpoint();
    if (path.isEmpty()) {
        d->fail(tr("%1 has no %2 yet.")
                    .arg(run->name(), best ? QStringLiteral("best.pth.tar") : QStringLiteral("last.pth.tar")));
        return false;
    }
    Q_EMIT openCheckpointRequested(path);
    return true;
}

void TrainingPanel::setFollowCheckpoints(bool follow)
{
    d->follow->setChecked(follow);
}

bool TrainingPanel::followCheckpoints() const
{
    return d->follow->isChecked();
}

int TrainingPanel::activeRunCount() const
{
    int n = 0;
    for (auto* r : d->model->runs())
        n += r->isActive() && r->isAttached();
    return n;
}

void TrainingPanel::stopAllAndWait(int timeoutMs)
{
    QList<QPointer<TrainingRun>> stopping;
    for (auto* r : d->model->runs())
        if (r->isActive() && r->isAttached()) {
            if (r->status() != RunStatus::Stopping)
                r->stop();
            stopping << r;
        }
    const auto remaining = [&] {
        int n = 0;
        for (const auto& r : std::as_const(stopping))
            n += r && r->isActive();
        return n;
    };
    if (remaining() == 0)
        return;
    QEventLoop loop;
    QTimer check;
    check.setInterval(100);
    QObject::connect(&check, &QTimer::timeout, &loop, [&] {
        if (remaining() == 0)
            loop.quit();
    });
    QTimer::singleShot(timeoutMs, &loop, &QEventLoop::quit);
    std::unique_ptr<QProgressDialog> dialog;
    if (d->interactive) {
        dialog = std::make_unique<QProgressDialog>(
            tr("Stopping %n training run(s): each finishes its step and saves last.pth.tar…", nullptr, remaining()),
            tr("Kill Now"), 0, 0, this);
        dialog->setWindowModality(Qt::ApplicationModal);
        dialog->setMinimumDuration(300);
        QObject::connect(dialog.get(), &QProgressDialog::canceled, &loop, &QEventLoop::quit);
    }
    check.start();
    loop.exec();
    // Whatever did not stop in time is killed (a second stop()) and reaped.
    for (const auto& r : std::as_const(stopping))
        if (r && r->isActive()) {
            r->stop();
            QElapsedTimer waited;
            waited.start();
            while (r && r->isActive() && waited.elapsed() < 5000)
                QCoreApplication::processEvents(QEventLoop::AllEvents, 50);
        }
}

void TrainingPanel::detachAll()
{
    for (auto* r : d->model->runs())
        if (r->isActive() && r->isAttached())
            r->detach();
    d->saveRuns();
}

bool TrainingPanel::prepareClose(CloseAction action)
{
    d->saveForm();
    d->saveRuns();
    const int active = activeRunCount();
    if (active == 0)
        return true;
    if (action == CloseAction::Ask) {
        QMessageBox box(QMessageBox::Question, tr("Training in progress"),
                        tr("%n training run(s) still going.", nullptr, active), QMessageBox::NoButton, this);
        box.setInformativeText(tr("Stop them (each finishes its step and saves last.pth.tar, so it can be resumed), or "
                                  "leave them running? Runs left running keep writing their folders; the explorer "
                                  "shows them again when it next starts."));
        auto* stop = box.addButton(tr("Stop Runs"), QMessageBox::AcceptRole);
        auto* leave = box.addButton(tr("Leave Running"), QMessageBox::AcceptRole);
        box.addButton(QMessageBox::Cancel);
        box.setDefaultButton(stop);
        box.exec();
        if (box.clickedButton() == stop)
            action = CloseAction::Stop;
        else if (box.clickedButton() == leave)
            action = CloseAction::Detach;
        else
            return false;
    }
    if (action == CloseAction::Stop)
        stopAllAndWait();
    else
        detachAll();
    return true;
}

QString TrainingPanel::lastError() const
{
    return d->lastError;
}

}  // namespace fec::ui
