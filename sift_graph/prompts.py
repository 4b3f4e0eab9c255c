"""Prompts for the four SIFT operations and the fallback, in our own words and examples.

Each prompt is a single user turn (no system prompt), as in the paper. Every solve ends
with the same instruction, so the final answer lands in `\\boxed{}` where
`answers.extract_answer` looks first.
"""

from __future__ import annotations

SOLVE_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

STICKER_FORMAT = """\
**Conditions:**
1. <one fact taken from the problem>
2. <another fact>
...
**Question:** <one sentence asking for the unknown, without restating the facts>"""

# --- SG: sticker generation --------------------------------------------------------

STICKER_PROMPT = """\
You turn a math problem into a Sticker: a list of the facts it gives and the one thing it asks.

Rules:
- Each condition is one atomic fact, copied faithfully from the problem: keep every number, unit and rate exactly ("$3 per pound" stays "per pound").
- Keep conditions that matter; do not add facts, guesses or calculations.
- The question is one sentence asking only for the unknown; the facts live in the conditions.
- Write the Sticker in exactly this format and nothing after it:

{format}

Example problem:
A bakery sells muffins for $2.50 each. On Monday it sold 40 muffins, and on Tuesday it sold twice as many as on Monday. How much money did the bakery make from muffins over the two days?

Example Sticker:
**Conditions:**
1. A muffin costs $2.50.
2. The bakery sold 40 muffins on Monday.
3. On Tuesday it sold twice as many muffins as on Monday.
**Question:** How much money did the bakery make from muffins on Monday and Tuesday together?

Problem:
{question}

Sticker:"""

# --- CP: the two consensus predictions -----------------------------------------------

PREDICT_STICKER_PROMPT = """\
Solve the problem described by these facts.

{sticker}

{instruction}"""

PREDICT_QUERY_STICKER_PROMPT = """\
Problem:
{question}

Key facts of the problem:
{sticker}

Solve the problem, using the key facts to read it correctly.
{instruction}"""

# --- FO: forward optimization ---------------------------------------------------------

FORWARD_PROMPT = """\
You check a Sticker against the problem it summarizes and return a corrected Sticker.

Look for these errors and fix every one you find:
- a condition of the problem is missing from the Sticker: add it;
- a condition is wrong (a changed number, unit, rate or relation): correct it from the problem;
- a condition is redundant or invented (not stated in the problem): remove it;
- the question is vague or asks for something other than the problem: restate it precisely.
Also keep the format exact. If the Sticker is already correct, return it unchanged.

Format:
{format}

Example 1 (missing condition)
Problem: Tom reads 12 pages a day for 5 days and then 20 pages a day for 3 days. How many pages does he read?
Sticker:
**Conditions:**
1. Tom reads 12 pages a day for 5 days.
**Question:** How many pages does Tom read in total?
Corrected Sticker:
**Conditions:**
1. Tom reads 12 pages a day for 5 days.
2. Then Tom reads 20 pages a day for 3 days.
**Question:** How many pages does Tom read in total?

Example 2 (wrong condition)
Problem: Apples cost $4 per kilogram. Mia buys 3 kilograms. How much does she pay?
Sticker:
**Conditions:**
1. Apples cost $4.
2. Mia buys 3 kilograms of apples.
**Question:** How much does Mia pay?
Corrected Sticker:
**Conditions:**
1. Apples cost $4 per kilogram.
2. Mia buys 3 kilograms of apples.
**Question:** How much does Mia pay?

Example 3 (invented condition)
Problem: A tank holds 50 liters and is half full. How many liters are in it?
Sticker:
**Conditions:**
1. A tank holds 50 liters.
2. The tank is half full.
3. The tank leaks 2 liters an hour.
**Question:** How many liters are in the tank?
Corrected Sticker:
**Conditions:**
1. A tank holds 50 liters.
2. The tank is half full.
**Question:** How many liters are in the tank?

Example 4 (vague question)
Problem: Sara has 3 red and 5 blue marbles. What fraction of her marbles are red?
Sticker:
**Conditions:**
1. Sara has 3 red marbles.
2. Sara has 5 blue marbles.
**Question:** How many marbles?
Corrected Sticker:
**Conditions:**
1. Sara has 3 red marbles.
2. Sara has 5 blue marbles.
**Question:** What fraction of Sara's marbles are red?

Now your turn.
Problem: {question}
Sticker:
{sticker}
Corrected Sticker:"""

# --- IG: inverse generation -----------------------------------------------------------

INVERSE_PROMPT = """\
Below is a worked solution to a math problem you cannot see. Reconstruct the problem's Sticker from it: the facts the solution starts from and the question it answers.

Rules:
- Only facts that were given, never intermediate results or steps of the solution.
- One atomic fact per condition; the question is one sentence.
- Write the Sticker in exactly this format and nothing after it:

{format}

Example solution:
Each box holds 6 eggs and there are 7 boxes, so there are 6 * 7 = 42 eggs. After 10 break, 42 - 10 = 32 remain. The answer is \\boxed{{32}}.

Example Sticker:
**Conditions:**
1. Each box holds 6 eggs.
2. There are 7 boxes.
3. 10 eggs break.
**Question:** How many eggs remain unbroken?

Solution:
{solution}

Sticker:"""

# --- Fallback: plain chain of thought -------------------------------------------------

DIRECT_PROMPT = """\
{question}

{instruction}"""


def sticker_prompt(question: str) -> str:
    return STICKER_PROMPT.format(format=STICKER_FORMAT, question=question)


def predict_sticker_prompt(sticker: str) -> str:
    return PREDICT_STICKER_PROMPT.format(sticker=sticker, instruction=SOLVE_INSTRUCTION)


def predict_query_sticker_prompt(question: str, sticker: str) -> str:
    return PREDICT_QUERY_STICKER_PROMPT.format(question=question, sticker=sticker, instruction=SOLVE_INSTRUCTION)


def forward_prompt(question: str, sticker: str) -> str:
    return FORWARD_PROMPT.format(format=STICKER_FORMAT, question=question, sticker=sticker)


def inverse_prompt(solution: str) -> str:
    return INVERSE_PROMPT.format(format=STICKER_FORMAT, solution=solution)


def direct_prompt(question: str) -> str:
    return DIRECT_PROMPT.format(question=question, instruction=SOLVE_INSTRUCTION)


# A fragment that only each role's prompt contains, checked in this order (the forward
# prompt quotes a sticker, so it is recognised before the sticker prompt).
_ROLE_MARKERS = (
    ("forward", "Corrected Sticker:"),
    ("inverse", "Reconstruct the problem's Sticker"),
    ("sticker", "You turn a math problem into a Sticker"),
    ("predict_query_sticker", "Key facts of the problem:"),
    ("predict_sticker", "Solve the problem described by these facts."),
)


def role_of_prompt(prompt: str) -> str:
    """Which SIFT role a prompt of ours was written for (`direct` if none of the others):
    how a fake server on the far side of an HTTP API tells the calls apart."""
    for role, marker in _ROLE_MARKERS:
        if marker in prompt:
            return role
    return "direct"
