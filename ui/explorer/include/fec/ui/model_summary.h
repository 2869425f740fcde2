#pragma once

// What the window shows about a loaded checkpoint (the same facts as `fec inspect`), as text.

#include <QList>
#include <QPair>
#include <QString>
#include <QStringList>

namespace fec::ui {

struct ModelSummary {
    QString path;
    QString fileName;
    QString container;  ///< "zip" or "legacy"
    QString layout;     ///< "timm training checkpoint", "bare state_dict", ...
    QString weights;    ///< entry used, with whether EMA weights exist
    bool usesEma = false;
    QString variant;             ///< "fec_small", "custom", ...
    QString architecture;        ///< FecConfig::summary()
    QString architectureSource;  ///< stored / inferred
    QString notes;
    qint64 parameters = 0;
    int numClasses = 0;
    QString classNamesSource;
    QStringList classNames;
    int storedInputSize = 0;   ///< 0 when the checkpoint does not say
    QString storedPreprocess;  ///< empty when the checkpoint does not say
    int sizeMultiple = 32;
    int levels = 3;
    QString device;    ///< "cpu (2 threads)", "cuda:0"
    QString loadTime;  ///< "0.4 s"

    /// (field, value) rows in display order.
    QList<QPair<QString, QString>> rows() const;
};

}  // namespace fec::ui
