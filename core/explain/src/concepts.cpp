#include "fec/explain/concepts.h"
