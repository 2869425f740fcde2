#include "fec/explain/evidence_stats.h"
