"""Writes aurora_rl_dashboard.json: a Grafana dashboard of the GRPO job's Ray metrics.

    .venv/bin/python cluster/grafana/build_dashboard.py      # rewrites the JSON beside this file

Ray exports ``ray.util.metrics`` under a ``ray_`` prefix: the driver's per-step gauges
(learner/train_log.py, one per key of the metrics row) as ``ray_aurora_grpo_<key>``, the reward
workers' counter and gauge (rewards/reward_worker.py) as ``ray_aurora_reward_records_total``
and ``ray_aurora_reward_mean``. Import the JSON in Grafana with a Prometheus data source that
scrapes the cluster (docs/CLUSTER.md).
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).with_name("aurora_rl_dashboard.json")


def grpo(*keys: str) -> list[tuple[str, str]]:
    return [(f"ray_aurora_grpo_{k}", k) for k in keys]


# (title, unit, [(PromQL, legend)])
PANELS = [
    ("Reward (step mean)", "none", grpo("reward", "reward_format", "reward_iou", "reward_cls")),
    ("Reward spread within groups", "none", grpo("group_reward_std", "groups_flat", "groups_small_spread")),
    ("Loss", "none", grpo("loss", "policy_loss", "mask_bce", "mask_dice")),
    ("KL, clip fraction, grad norm", "none", grpo("kl", "clip_fraction", "grad_norm")),
    ("Sampling throughput", "none", grpo("tokens_per_s", "samples_per_s")),
    ("Queue depth (records waiting)", "none", grpo("rollout_queue", "scored_queue")),
    ("Policy version and lag", "none", grpo("version", "policy_lag")),
    ("Rollout actors", "none", grpo("rollout_actors")),
    ("Step phases", "s", grpo("time_sample_s", "seg_s", "time_reward_wait_s", "time_learn_s", "time_broadcast_s",
                             "time_step_s")),
    ("Weight sync bandwidth", "GBs", grpo("broadcast_gb_per_s")),
    ("Weight sync time (asynchronous: the broadcast runs while the next step trains)", "s",
     grpo("broadcast_s", "apply_s", "weights_wait_s")),
    # groups_lag_<k> exists for k up to learner.max_policy_lag: the share at lag 0 is in every job
    ("Share of learned groups sampled at the learner's version (lag 0)", "percentunit", grpo("groups_lag_0")),
    ("Off-policy: importance weights and learner-actor mismatch", "none",
     grpo("is_ess", "is_truncated", "logprob_mismatch", "ratio_mean")),
    ("Records learned and dropped", "none", grpo("learned", "stale_dropped", "duplicates_dropped",
                                                 "foreign_dropped", "incomplete_groups")),
    ("Reward workers: records/s by outcome", "ops",
     [("sum by (outcome) (rate(ray_aurora_reward_records_total[1m]))", "{{outcome}}")]),
    ("Reward workers: mean reward by kind", "none",
     [("avg by (kind) (ray_aurora_reward_mean)", "{{kind}}")]),
]


def panel(index: int, title: str, unit: str, queries: list[tuple[str, str]]) -> dict:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": 12 * (index % 2), "y": 8 * (index // 2), "w": 12, "h": 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "none"}},
        "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                     "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                    for i, (expr, legend) in enumerate(queries)],
    }


def dashboard() -> dict:
    return {
        "title": "aurora_rl GRPO",
        "uid": "aurora-rl-grpo",
        "tags": ["aurora_rl", "ray"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "label": "Prometheus", "type": "datasource",
                                 "query": "prometheus", "current": {}, "hide": 0}]},
        "panels": [panel(i, *p) for i, p in enumerate(PANELS)],
    }


def render() -> str:
    return json.dumps(dashboard(), indent=1) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT} ({len(PANELS)} panels)")
