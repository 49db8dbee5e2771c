"""The SinSim paper's experiments from one command, and the report they make.

    python train/run.py --protocol paper --data-dir ../shared/data            # everything
    python train/run.py --protocol paper --report-only --out runs/paper       # the report again, no training

What it runs (``--protocol paper --help`` lists every flag):

* **Tables I and II** (linear and 2-layer MLP probes on frozen ResNet-18
  features): ``--methods`` (SimCLR, BYOL, VICReg, Barlow Twins, SinSim) x
  ``--datasets`` (MNIST, CIFAR-10, CIFAR-100, STL-10) x ``--seeds``, plus an
  untrained-encoder floor per dataset and seed.
* **Figure 1**: t-SNE (and UMAP when umap-learn is installed) of the test
  features of SimCLR, SinSim and VICReg; every cell's geometry (alignment,
  uniformity, effective rank, silhouette: :mod:`train.geometry`), which each
  run measures itself.
* **Figures 2 and 3**: accuracy and geometry against the Sinkhorn weight
  lambda (0 is SimCLR) and against epsilon, for each Sinkhorn term
  (``--sweep-terms entropic divergence``) and place it acts on
  (``--sweep-on features projection``), on ``--sweep-datasets``.
* **report.md**, written only from the files the runs left (:mod:`.report`):
  its budget and limits first, then one declared primary comparison and a
  Holm-corrected family of the others (:mod:`.comparisons`); choices read the
  validation split (:mod:`train.splits`), final numbers the test split.

The unit of work is a *cell*: one training configuration on one dataset with
one seed, in its own run folder (the layout of ``train/protocol.py``)::

    OUT/paper.json                    the protocol's settings and everything ever asked for
    OUT/sessions.jsonl                one line per invocation: machine, git commit, argv, counts
    OUT/run.log                       what each invocation did with each cell (ran, resumed, skipped, failed)
    OUT/cells/<dataset>/<cell>/seed<k>/
        cell.json                     the settings the cell was started with (checked on every rerun)
        config.json metrics.csv checkpoint.pt results.json results.md    (train/protocol.py; results.json
                                      holds test and validation accuracies, geometry and git commit)
        embedding.npz                 the test features (figure methods only), for the t-SNE / UMAP plots
        failed.json                   why the cell stopped (a NaN loss), when it did
    OUT/figures/*.png  OUT/report.md

A cell that holds ``results.json`` is never trained again; one that holds
only a checkpoint resumes from it (``train.protocol.run_method`` with
``--resume``). Cells are shared: the lambda sweep's lambda = 0 is the SimCLR
cell (SinSim with lambda = 0 trains exactly SimCLR, see
tests/test_paper_grid.py) and its default (term, lambda, eps, placement)
point is the grid's SinSim cell.
"""
