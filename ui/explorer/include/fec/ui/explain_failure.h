#pragma once

// What the explain controller reports when loading a checkpoint or explaining an image fails: the
// readable message, whether memory ran out, and what a retry could change (plain data, no Qt widgets).

#include <QMetaType>
#include <QString>

namespace fec::ui {

/// The model a session holds: the one every view shows, or the second one of the Compare view.
enum class ModelRole { Primary, Comparison };

struct ExplainFailure {
    ModelRole model = ModelRole::Primary;
    bool loading = false;      ///< loading the checkpoint failed (else explaining the image)
    QString checkpoint;        ///< path of the checkpoint
    QString image;             ///< path of the image (runs only)
    QString message;           ///< readable; names the file
    bool outOfMemory = false;  ///< the device (or the host) ran out of memory
    /// Worth retrying on the CPU: memory ran out on a GPU and the CPU is not chosen already.
    bool retryOnCpu = false;
    /// Worth retrying at this input side (about half the pixels; runs only); 0: none smaller fits.
    int retrySize = 0;
};

}  // namespace fec::ui

Q_DECLARE_METATYPE(fec::ui::ExplainFailure)
