"""Evaluation config: a policy and the paper's baselines on the synthetic routing task (simulated pool).

`python launch/eval.py --config=configs/eval_synthetic.py --policy=bundled:smollm2 --out=/tmp/eval`
Every field can be overridden: `--config.generation.max_turns=2 --config.sampled_seeds=5`.
For a real benchmark: `--dataset=nq_test.jsonl --config.data_source=nq --config.pool.kind=router_r1`
(NVIDIA NIM; key in $NVIDIA_API_KEY) or `--config.pool.kind=/path/candidates.json` (list of Candidate dicts).
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.out = "eval_out"

    # Policies: comma-separated specs (HF dir, .gguf, bundled:smollm2, tiny). Each is evaluated with the routing
    # prompt ("policy" rows; e.g. one per α of a sweep); the first one also runs the policy baselines.
    c.policy = "bundled:smollm2"
    c.base_policy = ""  # the untrained policy of the Direct/CoT/Prompt LLM/KNN baselines (default: the first)
    c.tokenizer = ""  # default: the policy's own (tiny: the bundled SmolLM2 tokenizer)
    c.dtype = "float32"

    # Questions: "synthetic" or a .jsonl/.parquet file. A .jsonl file is scored as data_source, or as its FlashRAG
    # folder (<benchmark>/test.jsonl) says; test_subset "upstream" keeps qa_test_gen.py's rows of it (min(len, 500)
    # sampled with seed 42), "file" its rows in order; then the first num_questions.
    c.dataset = "synthetic"
    c.data_source = ""
    c.test_subset = "upstream"
    c.train_dataset = ""  # KNN training questions for file datasets (synthetic: its train split)
    c.num_questions = 32  # 0 = all
    c.num_train = 64  # KNN training questions (0 = all)
    c.synthetic = ml_collections.ConfigDict(dict(seed=0, num_train=400, num_test=200, countries_per_split=40,
                                                 companies_per_split=60, albums_per_split=60))

    # Candidate pool: "simulated" (started here for the synthetic task), "router_r1" (upstream's six models on
    # NVIDIA NIM) or a JSON file with a list of Candidate dicts.
    c.pool = ml_collections.ConfigDict(dict(kind="simulated", cache_path="", max_concurrency=16,
                                            latency_scale=0.0, simulated_seed=0))

    # Prompts: "upstream" (Router-R1's template for the pool) or "compact" (names only; small CPU runs);
    # family "auto" picks the Qwen template for Qwen models, else the Llama one (LLMRouter's rule).
    c.prompt = "upstream"
    c.template_family = "auto"

    c.generation = ml_collections.ConfigDict(dict(num_slots=8, max_turns=4, max_turn_tokens=1024,
                                                  max_obs_length=600, segment_steps=64))
    c.decoding = "greedy,sampled"  # sampled = upstream's evaluation decoding (T=1, top-p 0.95)
    c.sampled_seeds = 3
    c.alpha = 0.0  # cost coefficient of the reported reward
    c.baselines = "direct,cot,prompt_llm,single,oracle,knn"
    c.knn_k = 5
    c.compare_reports = ""  # comma list of earlier report.json files whose policy rows join the Pareto plot
    return c
