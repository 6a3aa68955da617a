"""LongBench v2 prompt templates (THUDM/LongBench prompts/*.txt), reproduced verbatim as data."""

TEMPLATE_0SHOT = (
    'Please read the following text and answer the question below.\n\n<text>\n$DOC$\n</text>\n\nWhat '
    'is the correct answer to this question: $Q$\nChoices:\n(A) $C_A$\n(B) $C_B$\n(C) $C_C$\n(D) $C_'
    'D$\n\nFormat your response as follows: "The correct answer is (insert answer here)".'
)
TEMPLATE_COT = (
    'Please read the following text and answer the questions below.\n\n<text>\n$DOC$\n</text>\n\nWhat'
    ' is the correct answer to this question: $Q$\nChoices:\n(A) $C_A$\n(B) $C_B$\n(C) $C_C$\n(D) $C'
    '_D$\n\nLet’s think step by step:'
)
TEMPLATE_COT_ANSWER = (
    'Please read the following text and answer the questions below.\n\nThe text is too long and o'
    'mitted here.\n\nWhat is the correct answer to this question: $Q$\nChoices:\n(A) $C_A$\n(B) $C_B'
    '$\n(C) $C_C$\n(D) $C_D$\n\nLet’s think step by step: $COT$\n\nBased on the above, what is the si'
    'ngle, most likely answer choice? Format your response as follows: "The correct answer is ('
    'insert answer here)".'
)
