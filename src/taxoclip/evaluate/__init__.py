"""Evaluation: zero-shot and few-shot classification, benchmark suites, hierarchy of the embedding space.

| module       | what                                                                       |
|--------------|----------------------------------------------------------------------------|
| `tasks`      | a task = metadata table + image folder; class texts per text type          |
| `features`   | cached image features and zero-shot class vectors                          |
| `zeroshot`   | top-1/top-5, per-class and per-rank accuracy                               |
| `fewshot`    | CL2N nearest centroid and a linear probe; supports saved and re-read       |
| `suite`      | YAML suites: every model on every task, Markdown/CSV tables, bar charts    |
| `hierarchy`  | the paper's t-SNE drill-down figure; per-rank kNN agreement and silhouette |
| `ablation`   | checkpoints x test-time text type, the paper's Table 5 layout              |
"""

from .ablation import ABLATION_TEXT_TYPES, AblationResult, run_ablation
from .features import FeatureSet, image_features, task_features, text_features
from .fewshot import (
    FewShotResult,
    Supports,
    cl2n_predict,
    draw_supports,
    few_shot,
    read_supports,
    write_supports,
)
from .hierarchy import HierarchyResult, drilldown_figure, hierarchy, hierarchy_scores, knn_agreement
from .suite import ModelEntry, Suite, SuiteResult, read_suite, run_suite
from .tasks import ASIS, EVAL_TEXT_TYPES, LabelTexts, Task, TaskSpec, label_texts, load_task
from .zeroshot import ZeroShotResult, per_rank_accuracy, score_zero_shot, zero_shot

__all__ = [
    "ABLATION_TEXT_TYPES", "ASIS", "EVAL_TEXT_TYPES", "AblationResult", "FeatureSet", "FewShotResult",
    "HierarchyResult", "LabelTexts", "ModelEntry", "Suite", "SuiteResult", "Supports", "Task", "TaskSpec",
    "ZeroShotResult", "cl2n_predict", "draw_supports", "drilldown_figure", "few_shot", "hierarchy",
    "hierarchy_scores", "image_features", "knn_agreement", "label_texts", "load_task", "per_rank_accuracy",
    "read_suite", "read_supports", "run_ablation", "run_suite", "score_zero_shot", "task_features",
    "text_features", "write_supports", "zero_shot",
]
