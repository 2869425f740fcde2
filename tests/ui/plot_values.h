#pragma once

// What a bar chart shows, as a test reads it back from its QCustomPlot.

#include <algorithm>
#include <utility>
#include <vector>

#include "fec/ui/qcustomplot_wrapper.h"

namespace fec::test {

/// The values of the bars of the first `plottables` plottables of `plot` (all when negative),
/// ordered by their key (position along the category axis). Other plottable kinds are ignored.
inline std::vector<double> barValues(QCustomPlot* plot, int plottables = -1)
{
    const int count = plottables < 0 ? plot->plottableCount() : std::min(plottables, plot->plottableCount());
    std::vector<std::pair<double, double>> bars;
    for (int i = 0; i < count; ++i) {
        auto* b = qobject_cast<QCPBars*>(plot->plottable(i));
        if (!b)
            continue;
        for (auto it = b->data()->constBegin(); it != b->data()->constEnd(); ++it)
            bars.emplace_back(it->key, it->value);
    }
    std::sort(bars.begin(), bars.end());
    std::vector<double> values;
    for (const auto& [key, value] : bars)
        values.push_back(value);
    return values;
}

}  // namespace fec::test
