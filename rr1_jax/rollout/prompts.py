"""Router-R1's prompts: the policy template (Qwen and Llama variants), its candidate list, and the helper prompt.

The texts are upstream's exactly (`data_process/prompt_pool.py`, `router_r1/llm_agent/route_service.py`); tests pin
their sha256. The policy template is assembled from a head, the list of candidate names, the descriptions section
and a tail, so a different candidate pool gets a matching prompt; the default (upstream's six training models with
their descriptions) reproduces upstream's template byte for byte. Templates contain the literal `{question}`
placeholder and are filled with `str.replace` (upstream uses `format_map`; identical for its template, but a custom
description containing braces would break `format_map`).
"""
from __future__ import annotations

from typing import Iterable, Sequence

from rr1_jax.data.qa import upstream_question
from rr1_jax.model.tokenizer import chat_prompt_ids
from rr1_jax.rollout.candidates import ROUTER_R1_POOL, ROUTER_R1_TRAIN_NAMES, Candidate, CandidatePool

TEMPLATE_FAMILIES = ("qwen", "llama")
QUESTION_PLACEHOLDER = "{question}"
QUERY_PLACEHOLDER = "{query}"

# Upstream's text, verbatim (trailing spaces and the 5-space joins of `\`-continued source lines included).
_HEAD = (
    "\n"
    "Answer the given question. Every time you receive new information, you must first conduct reasoning inside "
    "<think> ... </think>. After reasoning, if you find you lack some knowledge, you can call a specialized LLM "
    "by writing a query inside <search> LLM-Name:Your-Query </search>. \n"
    "!!! STRICT FORMAT RULES for <search>: !!!\n"
    "    + You MUST replace LLM-Name with the EXACT name of a model selected from "
)
_AFTER_NAMES = (
    ".     + You MUST replace Your-Query with a CONCRETE QUESTION that helps answer the original question below. "
    "    + NEVER copy or paste model descriptions into <search>.\n"
    "    + NEVER output the placeholder format <search> LLM-Name:Your-Query </search>. Always replace both parts "
    "correctly. \n"
    "Before each LLM call, you MUST explicitly reason inside <think> ... </think> about:     + Why external "
    "information is needed.     + Which model is best suited for answering it, based on the LLMs' abilities (described below). "
    "\n"
    "When you call an LLM, the response will be returned between <information> and </information>. You must not "
    "limit yourself to repeatedly calling a single LLM (unless its provided information is consistently the most "
    "effective and informative). You are encouraged to explore and utilize different LLMs to better understand "
    "their respective strengths and weaknesses. It is also acceptable—and recommended—to call different LLMs "
    "multiple times for the same input question to gather more comprehensive information. \n"
    "\n"
    "#### The Descriptions of Each LLM \n"
)
_TAIL = (
    "If you find that no further external knowledge is needed, you can directly provide your final answer inside "
    "<answer> ... </answer>, without additional explanation or illustration. For example: <answer> Beijing </answer>. "
    "    + Important: You must not output the placeholder text \"<answer> and </answer>\" alone.     + You must "
    "insert your actual answer between <answer> and </answer>, following the correct format. Question: {question}\n"
    "\n"
)
_LLAMA_EXTRA_BULLET = (
    "    + DO NOT output <think> ... </think> as a literal string. Instead, perform your reasoning and write "
    "your thought process within these tags. That means: put your reasoning inside the tags, not as visible raw "
    "tags in the output. Only the reasoning content should appear between <think> and </think>. Do not explain "
    "or comment on the use of tags. "
)
AGENT_PROMPT = (
    "\n"
    "You are a helpful assistant. You are participating in a multi-agent reasoning process, where a base model "
    "delegates sub-questions to specialized models like you. \n"
    "Your task is to do your **absolute best** to either: \n"
    "\n"
    "    + Answer the question directly, if possible, and provide a brief explanation; or \n"
    "\n"
    "    + Offer helpful and relevant context, background knowledge, or insights related to the question, even "
    "if you cannot fully answer it. \n"
    "If you are completely unable to answer the question or provide any relevant or helpful information, you "
    "must: \n"
    "\n"
    "    + Clearly state that you are unable to assist with this question, and \n"
    "\n"
    "    + Explicitly instruct the base model to consult other LLMs for further assistance. \n"
    "**Important Constraints**: \n"
    "\n"
    "    + Keep your response clear, concise, and informative (preferably under 512 tokens). Your response will "
    "help guide the base model’s reasoning and next steps. \n"
    "\n"
    "    + Stay strictly on-topic. Do not include irrelevant or generic content. \n"
    "\n"
    "\n"
    "Here is the sub-question for you to assist with: {query}\n"
    "\n"
)

_LLAMA_ANCHOR = "Always replace both parts correctly. "  # the Llama bullet joins the line ending here


def build_policy_template(candidates: Iterable[Candidate], family: str = "qwen") -> str:
    """The policy template listing `candidates` (names in order, then `Name:description` paragraphs)."""
    if family not in TEMPLATE_FAMILIES:
        raise ValueError(f"template family {family!r} is unknown; choose one of {TEMPLATE_FAMILIES}")
    candidates = list(candidates)
    if not candidates:
        raise ValueError("the policy prompt needs at least one candidate")
    undescribed = [c.name for c in candidates if not c.description.strip()]
    if undescribed:
        raise ValueError(f"candidates {undescribed} have no description; set Candidate.description (the policy "
                         f"picks models by these texts)")
    names = "[" + ", ".join(c.name for c in candidates) + "]"
    descriptions = "".join(f"{c.name}:{c.description}\n\n" for c in candidates)
    head = _HEAD
    after_names = _AFTER_NAMES
    if family == "llama":
        after_names = after_names.replace(_LLAMA_ANCHOR, _LLAMA_ANCHOR + _LLAMA_EXTRA_BULLET, 1)
    return head + names + after_names + descriptions + _TAIL


def template_for_pool(pool: CandidatePool, names: Sequence[str] | None = None, family: str = "qwen") -> str:
    """The template for the pool members called `names` (default: every candidate), in that order."""
    chosen = pool.names if names is None else names
    missing = [n for n in chosen if pool.resolve(n, "exact") is None]
    if missing:
        raise ValueError(f"names {missing} are not in the pool {list(pool.names)}")
    return build_policy_template([pool.resolve(n, "exact") for n in chosen], family)


def compact_routing_template(pool: CandidatePool) -> str:
    """A short routing prompt (names only, no descriptions) for small CPU runs and tiny policies; Router-R1's
    own template is `template_for_pool`."""
    names = ", ".join(pool.names)
    return ("Answer the given question. Think inside <think> and </think>. To ask a model, write <search> "
            f"Model-Name: question </search> with a model from [{names}]; its reply comes back inside "
            "<information> and </information>. Give the final answer inside <answer> and </answer>. "
            "Question: {question}\n")


def template_family_for_model(model_id: str) -> str:
    """LLMRouter's rule: the Qwen template iff "qwen" is in the model id, else the Llama one."""
    return "qwen" if "qwen" in model_id.lower() else "llama"


def routing_template_for(pool: CandidatePool, template: str, family: str, model: str, key: str = "prompt") -> str:
    """The routing prompt a config names: "compact", or "upstream" in `family` ("auto": by the name of `model`,
    the policy's path or family). `key` names the setting in the error for any other `template`."""
    if template == "compact":
        return compact_routing_template(pool)
    if template != "upstream":
        raise ValueError(f"{key}={template!r}: choose 'upstream' or 'compact'")
    return template_for_pool(pool, family=template_family_for_model(model) if family == "auto" else family)


PROMPT_TEMPLATE_QWEN = template_for_pool(ROUTER_R1_POOL, ROUTER_R1_TRAIN_NAMES, "qwen")
PROMPT_TEMPLATE_LLAMA = template_for_pool(ROUTER_R1_POOL, ROUTER_R1_TRAIN_NAMES, "llama")


def fill_template(template: str, question: str) -> str:
    """The user message for one question: upstream's preprocessing (strip, add "?") then substitution."""
    if QUESTION_PLACEHOLDER not in template:
        raise ValueError(f"the policy template has no {QUESTION_PLACEHOLDER} placeholder")
    return template.replace(QUESTION_PLACEHOLDER, upstream_question(question))


def render_prompt(tokenizer, question: str, template: str = PROMPT_TEMPLATE_QWEN) -> list[int]:
    """Prompt token ids as upstream builds them: one user message rendered with the model's chat template
    (`add_generation_prompt=True`, no system message, so Qwen2.5 adds its default one), encoded without extra
    special tokens."""
    return chat_prompt_ids(tokenizer, [{"role": "user", "content": fill_template(template, question)}])


def agent_message(query: str) -> str:
    """The helper prompt sent to a routed LLM as its only (user) message."""
    return AGENT_PROMPT.replace(QUERY_PLACEHOLDER, query)


_AGENT_PREFIX, _AGENT_SUFFIX = AGENT_PROMPT.split(QUERY_PLACEHOLDER)


def unwrap_agent_message(content: str) -> str | None:
    """The query inside a helper-prompt message (inverse of `agent_message`), or None if it is not one."""
    if len(content) >= len(_AGENT_PREFIX) + len(_AGENT_SUFFIX) and content.startswith(_AGENT_PREFIX) \
            and content.endswith(_AGENT_SUFFIX):
        return content[len(_AGENT_PREFIX):len(content) - len(_AGENT_SUFFIX)]
    return None
