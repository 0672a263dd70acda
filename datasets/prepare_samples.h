// prepare-data's sample recipes ([Sample format]): real labelled data that Debian packages ship,
// turned into train and held-out sample shards.
//   fashion-mnist   images of Zalando's Fashion-MNIST (dataset-fashion-mnist), 10 classes
//   fortune-classes each fortune (fortunes packages) labelled with the file it comes from
//   co2             windows of the weekly Mauna Loa CO2 record (statsmodels' co2 data set)
//                   forecasting the next weeks, with the persistence baseline's error
#pragma once

namespace dpt::datasets {

// When argv[1] names a recipe, runs it with the options after it and returns its exit code;
// else returns -1 (prepare-data goes on with its token shards). Throws UsageError for bad
// options or input.
int run_sample_recipe(int argc, char** argv);

}  // namespace dpt::datasets
