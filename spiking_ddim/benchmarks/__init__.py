"""Benchmarks as a library: what the ``eval/`` scripts measure and write, importable.

* :mod:`.rows`: a results row (one set of keys in every results file), measuring a
  pipeline against the original's images, merging rows, checking a table's settings;
* :mod:`.points`: the coding frontier's point grammar, labels and conversions;
* :mod:`.frontier`: the coding frontier's models (by the package's recipe), table and plot;
* :mod:`.table`: the network table's jobs, rows, table and plots;
* :mod:`.budgets`: the energy frontier of budgeted calibration: dominance, table and plot;
* :mod:`.architectures`: hub pipelines' architectures with random weights;
* :mod:`.noise`: the noise floor's variants, spreads and the sentence every table prints;
* :mod:`.baselines`: quantised ANN baselines and their table;
* :mod:`.plane`: quality against energy at matched precision, per estimate;
* :mod:`.args`: the flags the drivers share.

The scripts in ``eval/`` parse their flags, call these and write the files.
"""
