#pragma once

// Precompiled header of the ui targets whose sources see LibTorch (through explain_result.h).

#include <ATen/ATen.h>

#include <QtWidgets>

#include "fec/analysis.h"
#include "fec/model.h"
#include "fec/ui/explain_result.h"
