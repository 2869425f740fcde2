#pragma once

// Preferences: compute device, CPU threads, model input, weights and theme; kept in QSettings.

#include <QDialog>
#include <QStringList>

class QComboBox;
class QSettings;
class QSpinBox;

namespace fec::ui {

struct Preferences {
    QString device = QStringLiteral("auto");   ///< "auto", "cpu", "cuda:N"
    int threads = 0;                           ///< 0: one per core
    int size = 0;                              ///< model input side; 0: from the checkpoint, else 224
    QString preprocess;                        ///< "", "squash" or "crop" ("": from the checkpoint, else squash)
    QString weights = QStringLiteral("auto");  ///< "auto", "state_dict", "ema"
    QString theme = QStringLiteral("system");  ///< "system", "light", "dark"

    static Preferences load(const QSettings& settings);
    void save(QSettings& settings) const;
    bool operator==(const Preferences& o) const;
    bool operator!=(const Preferences& o) const { return !(*this == o); }
};

class PreferencesDialog : public QDialog {
    Q_OBJECT
public:
    /// `devices`: device names that can be chosen besides "auto" ("cpu", "cuda:0", ...);
    /// `defaultThreads`: what 0 threads means here.
    PreferencesDialog(const Preferences& preferences, const QStringList& devices, int defaultThreads,
                      QWidget* parent = nullptr);

    Preferences preferences() const;

private:
    QComboBox* m_device = nullptr;
    QSpinBox* m_threads = nullptr;
    QComboBox* m_size = nullptr;
    QComboBox* m_preprocess = nullptr;
    QComboBox* m_weights = nullptr;
    QComboBox* m_theme = nullptr;
};

}  // namespace fec::ui
