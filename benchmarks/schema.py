"""The documented layout of ``results.json`` as a JSON Schema (draft 2020-12).

The top level holds the run's settings (shared by every experiment of the run directory);
``experiments`` holds one section per experiment run so far (``tables``, ``radius``, ...), each
with its knobs, wall times and the stages it computed.

Pairs ``[mean, standard_error]`` are written as two-element arrays; the standard error is over
references (NaN when there is only one). Every such summary also keeps its per-reference means
(``per_reference``: one number per reference, in the order of ``references``), so a reader can
recompute any statistic. Radii are keys formatted with ``:g`` ("0.1"); accuracy also has the key
"0" (clean inputs against true labels). ``ms_ssim*`` entries without ``standard`` in their name
use the paper's variant of MS-SSIM.
"""

_PAIR = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
_NUMBERS = {"type": "array", "items": {"type": "number"}}
_PLAIN_DEFENDED = {"type": "object", "required": ["plain", "defended", "per_reference"],
                   "properties": {"plain": _PAIR, "defended": _PAIR, "per_reference": {
                       "type": "object", "required": ["plain", "defended"],
                       "properties": {"plain": _NUMBERS, "defended": _NUMBERS}}}}
_PLAIN = {"type": "object", "required": ["plain", "per_reference"],
          "properties": {"plain": _PAIR}}
_PER_RADIUS = {"type": "object", "additionalProperties": _PLAIN_DEFENDED}
_NUMBER_MAP = {"type": "object", "additionalProperties": {"type": "number"}}

_NUMBER_OR_NULL = {"type": ["number", "null"]}
_DIAGNOSTICS = {  # per input group; the distributions over points are optional (older runs lack them)
    "type": "object",
    "required": ["max_rhat", "min_ess_bulk", "min_ess_tail", "mean_accept_prob", "num_divergent"],
    "properties": {"num_divergent": {"type": "integer", "minimum": 0},
                   "chains_per_superchain": {"type": ["integer", "null"], "minimum": 1},
                   **{name: _NUMBER_OR_NULL for name in (
                       "rhat_median", "rhat_p90", "nested_rhat_median", "nested_rhat_p90",
                       "nested_rhat_max", "ess_bulk_median", "ess_bulk_p10", "ess_tail_median",
                       "ess_tail_p10", "ess_bulk_per_1k_grad_median", "ess_bulk_per_1k_grad_p10",
                       "ess_bulk_per_1k_grad_min", "ebfmi_median", "ebfmi_p10", "ebfmi_min",
                       "ebfmi_fraction_low", "lp_rhat_median", "lp_rhat_p90", "lp_rhat_max",
                       "divergence_rate")}},
}

_MODEL = {
    "type": "object",
    "required": ["kind", "beta", "decoder_output", "training", "provenance", "quality",
                 "classifier_test_accuracy", "robustness", "defence"],
    "properties": {
        "kind": {"enum": ["vae", "beta_vae", "beta_tcvae", "hvae"]},
        "beta": {"type": "number", "exclusiveMinimum": 0},
        "decoder_output": {"enum": ["sigmoid", "identity"]},
        "provenance": {"anyOf": [{"type": "null"}, {
            "type": "object", "required": ["command", "commit", "epochs", "seed", "sha256",
                                           "test_nll", "nll_importance_samples", "nll_points"]}]},
        "training": {"type": "object", "required": ["train_seconds", "validation_loss"]},
        "quality": {"type": "object",
                    "required": ["elbo", "nll", "nll_standard_error", "mse", "fd_cnn", "num_points",
                                 "num_importance_samples"]},
        "classifier_test_accuracy": _NUMBER_MAP,
        "robustness": {
            "type": "object",
            "required": ["ms_ssim", "ms_ssim_standard", "accuracy", "mse_references",
                         "ms_ssim_mean_reconstruction", "ms_ssim_standard_mean_reconstruction",
                         "mse_references_mean_reconstruction", "ms_ssim_clean",
                         "ms_ssim_standard_clean", "attack_objective"],
            "properties": {
                "ms_ssim_clean": _PAIR,
                "ms_ssim_standard_clean": _PAIR,
                "ms_ssim": _PER_RADIUS,
                "ms_ssim_standard": _PER_RADIUS,
                "ms_ssim_mean_reconstruction": _PER_RADIUS,
                "ms_ssim_standard_mean_reconstruction": _PER_RADIUS,
                "attack_objective": {"type": "object", "required": ["skl"],
                                     "additionalProperties": {"type": "object",
                                                              "additionalProperties": _PLAIN}},
                "mse_references_mean_reconstruction": _PLAIN_DEFENDED,
                "accuracy": {"type": "object", "additionalProperties": {
                    "type": "object", "required": ["0"],
                    "additionalProperties": _PLAIN_DEFENDED}},
                "mse_references": _PLAIN_DEFENDED,
            },
        },
        "defence": {
            "type": "object",
            "required": ["diagnostics", "seconds_per_point", "gradient_evaluations_per_point",
                         "num_transitions", "num_warmup", "step_size", "sampler_config"],
            "properties": {"diagnostics": {"type": "object",
                                           "additionalProperties": _DIAGNOSTICS}},
        },
        "diagnosis": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["reference_code_advantage", "guide_start",
                                           "oracle_start"]}},
    },
}

_SECTION = {"type": "object", "required": ["knobs", "wall_seconds", "wall_seconds_total",
                                           "stages_computed"],
            "properties": {"wall_seconds": _NUMBER_MAP,
                           "wall_seconds_total": {"type": "number", "minimum": 0},
                           "stages_computed": {"type": "array", "items": {"type": "string"}},
                           "computed_in": {"type": ["object", "null"],
                                           "required": ["commit", "wall_seconds_total"]}}}
_TABLES = {"allOf": [_SECTION, {
    "type": "object", "required": ["models", "references", "feature_network_accuracy"],
    "properties": {"models": {"type": "object", "minProperties": 1, "additionalProperties": _MODEL},
                   "references": {"type": "array", "items": {"type": "integer", "minimum": 0}}}}]}
_GROUP = {"type": "object", "required": ["ms_ssim", "ms_ssim_standard", "inputs",
                                         "attack_objective", "diagnostics"],
          "properties": {"ms_ssim": _PLAIN_DEFENDED, "ms_ssim_standard": _PLAIN_DEFENDED,
                         "inputs": _PLAIN, "attack_objective": _PLAIN,
                         "diagnostics": _DIAGNOSTICS}}
_START = {"type": "object", "required": ["ms_ssim"],
          "properties": {"ms_ssim": {"type": "object", "required": ["plain", "per_reference"],
                                     "properties": {"plain": _PAIR}}}}
# samplers experiment: MCMC sampler -> radius -> the defence's start and the oracle start
_SAMPLER_DIAGNOSIS = {"type": "object", "additionalProperties": {
    "type": "object", "additionalProperties": {
        "type": "object", "required": ["guide_start", "oracle_start"],
        "properties": {"guide_start": _START, "oracle_start": _START}}}}
_SCORED = {"type": "object", "required": ["groups", "defence"],
           "properties": {"groups": {"type": "object", "additionalProperties": _GROUP}}}

RESULTS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["schema_version", "dataset", "sampler", "seed", "profile", "model_source",
                 "decoder_output", "tasks", "environment", "protocol_notes", "experiments"],
    "properties": {
        "schema_version": {"const": 3},
        "dataset": {"enum": ["mnist", "fashionmnist", "colormnist"]},
        "sampler": {"type": "string"},
        "model_source": {"enum": ["zoo", "train", "checkpoint"]},
        "checkpoint": {"type": "object", "required": ["path", "sha256", "kind", "beta"]},
        "seed": {"type": "integer"},
        "profile": {"type": "object", "required": ["name", "radii", "models", "references",
                                                   "restarts", "num_chains"]},
        "tasks": {"type": "array", "items": {"enum": ["class", "digit", "colour"]}},
        "environment": {"type": "object", "required": ["device", "packages", "python"]},
        "protocol_notes": {"type": "array", "items": {"type": "string"}},
        "experiments": {
            "type": "object", "minProperties": 1, "additionalProperties": _SECTION,
            "properties": {
                "tables": _TABLES,
                "posterior_ratio": {"allOf": [_SECTION, {"type": "object", "required": [
                    "radius", "without_defence", "with_defence", "ks_statistic", "ks_pvalue"]}]},
                "transitions": {"allOf": [_SECTION, {"type": "object",
                                                     "required": ["radius", "curve"]}]},
                "radius": {"allOf": [_SECTION, _SCORED]},
                "objectives": {"allOf": [_SECTION, _SCORED]},
                "samplers": {"allOf": [_SECTION, {"type": "object", "required": ["samplers"],
                                                  "properties": {"samplers": {
                                                      "type": "object",
                                                      "additionalProperties": _SCORED},
                                                      "diagnosis": _SAMPLER_DIAGNOSIS}}]},
            },
        },
    },
}
