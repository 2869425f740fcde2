#pragma once

// What the window asks an inference worker to do: one image, one input size and preprocessing.

#include <QMetaType>
#include <QString>

namespace fec::ui {

struct ExplainRequest {
    quint64 requestId = 0;  ///< assigned by the worker when 0
    QString imagePath;
    int size = 0;        ///< model input side; 0: stored in the checkpoint, else 224
    QString preprocess;  ///< "squash" or "crop"; empty: stored in the checkpoint, else squash
};

}  // namespace fec::ui

Q_DECLARE_METATYPE(fec::ui::ExplainRequest)
