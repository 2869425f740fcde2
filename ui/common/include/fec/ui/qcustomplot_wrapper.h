#pragma once

// <qcustomplot.h> uses Qt's `signals` and `foreach` keywords, which QT_NO_KEYWORDS (needed by
// LibTorch) removes: map them for the duration of the include only.

#include <QtGlobal>

#pragma push_macro("signals")
#pragma push_macro("foreach")
#undef signals
#undef foreach
#define signals Q_SIGNALS
#define foreach Q_FOREACH
#include <qcustomplot.h>
#pragma pop_macro("foreach")
#pragma pop_macro("signals")
