#pragma once

// The page the explorer shows while no model is loaded: what it does, buttons to open a
// checkpoint, images or a folder, the recent checkpoints, where the default model and the sample
// images are, and which checkpoint is loading.

#include <QStringList>
#include <QWidget>

class QLabel;

namespace fec::ui {

class WelcomePage : public QWidget {
    Q_OBJECT
public:
    explicit WelcomePage(QWidget* parent = nullptr);

    /// The text under the title. `samplesFolder`: shown when not empty; `loading`: the file name of
    /// the checkpoint being loaded, empty when none.
    void setState(bool defaultModelFound, const QString& samplesFolder, const QString& loading);
    /// Buttons for the first few (most recent first).
    void setRecentCheckpoints(const QStringList& paths);

Q_SIGNALS:
    void openCheckpointRequested();
    void openImagesRequested();
    void openFolderRequested();
    void recentCheckpointChosen(const QString& path);

private:
    QLabel* m_text = nullptr;
    QWidget* m_recent = nullptr;
};

}  // namespace fec::ui
