#include "fec/ui/preferences_dialog.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QFormLayout>
#include <QLabel>
#include <QSettings>
#include <QSpinBox>
#include <QVBoxLayout>

namespace fec::ui {

Preferences Preferences::load(const QSettings& s)
{
    Preferences p;
    p.device = s.value(QStringLiteral("model/device"), p.device).toString();
    p.threads = s.value(QStringLiteral("model/threads"), p.threads).toInt();
    p.size = s.value(QStringLiteral("model/size"), p.size).toInt();
    p.preprocess = s.value(QStringLiteral("model/preprocess"), p.preprocess).toString();
    p.weights = s.value(QStringLiteral("model/weights"), p.weights).toString();
    p.theme = s.value(QStringLiteral("view/theme"), p.theme).toString();
    return p;
}

void Preferences::save(QSettings& s) const
{
    s.setValue(QStringLiteral("model/device"), device);
    s.setValue(QStringLiteral("model/threads"), threads);
    s.setValue(QStringLiteral("model/size"), size);
    s.setValue(QStringLiteral("model/preprocess"), preprocess);
    s.setValue(QStringLiteral("model/weights"), weights);
    s.setValue(QStringLiteral("view/theme"), theme);
}

bool Preferences::operator==(const Preferences& o) const
{
    return device == o.device && threads == o.threads && size == o.size && preprocess == o.preprocess &&
           weights == o.weights && theme == o.theme;
}

PreferencesDialog::PreferencesDialog(const Preferences& prefs, const QStringList& devices, int defaultThreads,
                                     QWidget* parent)
    : QDialog(parent)
{
    setWindowTitle(tr("Preferences"));
    auto* layout = new QVBoxLayout(this);
    auto* form = new QFormLayout;
    layout->addLayout(form);

    m_device = new QComboBox(this);
    m_device->addItem(tr("Automatic (CUDA when available)"), QStringLiteral("auto"));
    for (const auto& d : devices)
        m_device->addItem(d == QLatin1String("cpu") ? tr("CPU") : d.toUpper(), d);
    m_device->setCurrentIndex(std::max(0, m_device->findData(prefs.device)));
    form->addRow(tr("&Device:"), m_device);

    m_threads = new QSpinBox(this);
    m_threads->setRange(0, 256);
    m_threads->setSpecialValueText(tr("Automatic (%1)").arg(defaultThreads));
    m_threads->setValue(prefs.threads);
    m_threads->setToolTip(tr("CPU threads for inference. On a busy machine fewer threads can be faster."));
    form->addRow(tr("CPU &threads:"), m_threads);

    m_size = new QComboBox(this);
    m_size->addItem(tr("From the checkpoint (else 224)"), 0);
    for (int s : {128, 160, 192, 224, 256, 288, 320, 384, 448, 512})
        m_size->addItem(QStringLiteral("%1 × %1").arg(s), s);
    if (m_size->findData(prefs.size) < 0)
        m_size->addItem(QStringLiteral("%1 × %1").arg(prefs.size), prefs.size);
    m_size->setCurrentIndex(m_size->findData(prefs.size));
    form->addRow(tr("Input &size:"), m_size);

    m_preprocess = new QComboBox(this);
    m_preprocess->addItem(tr("From the checkpoint (else squash)"), QString());
    m_preprocess->addItem(tr("Squash (resize, the authors' visualisation)"), QStringLiteral("squash"));
    m_preprocess->addItem(tr("Centre crop (the authors' evaluation)"), QStringLiteral("crop"));
    m_preprocess->setCurrentIndex(std::max(0, m_preprocess->findData(prefs.preprocess)));
    form->addRow(tr("&Preprocess:"), m_preprocess);

    m_weights = new QComboBox(this);
    m_weights->addItem(tr("Automatic (EMA when present)"), QStringLiteral("auto"));
    m_weights->addItem(tr("Raw state_dict"), QStringLiteral("state_dict"));
    m_weights->addItem(tr("EMA (state_dict_ema)"), QStringLiteral("ema"));
    m_weights->setCurrentIndex(std::max(0, m_weights->findData(prefs.weights)));
    form->addRow(tr("&Weights:"), m_weights);

    m_theme = new QComboBox(this);
    m_theme->addItem(tr("System"), QStringLiteral("system"));
    m_theme->addItem(tr("Light"), QStringLiteral("light"));
    m_theme->addItem(tr("Dark"), QStringLiteral("dark"));
    m_theme->setCurrentIndex(std::max(0, m_theme->findData(prefs.theme)));
    form->addRow(tr("T&heme:"), m_theme);

    auto* note =
        new QLabel(tr("Device and weights reload the model; size and preprocessing rerun the current image."), this);
    note->setWordWrap(true);
    note->setForegroundRole(QPalette::PlaceholderText);
    layout->addWidget(note);

    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
    connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    layout->addWidget(buttons);
}

Preferences PreferencesDialog::preferences() const
{
    Preferences p;
    p.device = m_device->currentData().toString();
    p.threads = m_threads->value();
    p.size = m_size->currentData().toInt();
    p.preprocess = m_preprocess->currentData().toString();
    p.weights = m_weights->currentData().toString();
    p.theme = m_theme->currentData().toString();
    return p;
}

}  // namespace fec::ui
