"""A built-in, deterministic demo corpus so the whole pipeline runs offline with no arguments.

Written for this project from hand-made templates (nothing copied): short first-person
sentences over five emotions, about a quarter of them carrying two emotions and a few
carrying none, with distractor words shared across labels so the task is not trivial.
"""
from __future__ import annotations

import random

import numpy as np

LABELS = ["anger", "fear", "joy", "sadness", "surprise"]  # the seed notebook's columns

_CUES = {
    "anger": [
        "I am furious about", "this makes my blood boil:", "I can't stand", "I'm so angry about",
        "how dare they ruin", "I'm fed up with", "absolutely livid about", "seriously annoyed by",
        "I want to scream about", "so irritated by", "outraged by", "sick and tired of",
    ],
    "fear": [
        "I'm terrified of", "I'm scared about", "it frightens me to think of", "I'm really nervous about",
        "I dread", "I panic whenever I think of", "I'm anxious about", "I'm worried sick about",
        "it gives me chills thinking about", "I'm afraid of", "my hands shake when I think about", "I fear",
    ],
    "joy": [
        "I'm so happy about", "I love", "what a wonderful day thanks to", "I'm thrilled with",
        "I'm grinning because of", "so delighted by", "feeling great about", "I'm overjoyed about",
        "pure happiness:", "can't stop smiling about", "I'm glad about", "this made my day:",
    ],
    "sadness": [
        "I'm heartbroken about", "I feel so sad about", "I miss", "I've been crying over",
        "it hurts to think about", "I'm devastated by", "feeling down about", "so lonely since",
        "I'm grieving", "it breaks my heart to see", "I feel empty about", "gloomy all week because of",
    ],
    "surprise": [
        "I can't believe", "wow, I did not expect", "what a shock:", "I was stunned by",
        "no way, really?", "out of nowhere came", "I'm amazed by", "never saw this coming:",
        "I'm speechless about", "what a twist:", "totally caught off guard by", "unbelievable:",
    ],
}
_TOPICS = [
    "the new job", "my exam results", "the trip to the coast", "my landlord", "the dentist appointment",
    "the traffic this morning", "my sister's wedding", "the final match", "my old dog", "the layoffs",
    "the storm last night", "the concert", "my grandmother", "the broken phone", "the surprise party",
    "the election", "the neighbours", "my first paycheck", "the hospital visit", "the long flight",
    "the project deadline", "the birthday gift", "the empty house", "the job interview", "the test results",
    "the car accident", "the garden", "my best friend moving away", "the promotion", "the bill",
]
_TAILS = ["", "", "", ".", "!", " today.", " again.", " right now!", " honestly.", " this week."]
_NEUTRAL = [
    "I went to {t} and came back at six.", "Here is an update on {t}.", "We talked about {t} over lunch.",
    "The meeting about {t} is on Tuesday.", "Does anyone know the schedule for {t}?",
    "I wrote a short note about {t}.",
]
# Pairs that co-occur in real emotion data; the others appear less often.
_PAIRS = [("joy", "surprise"), ("fear", "sadness"), ("anger", "sadness"), ("fear", "surprise"),
          ("anger", "surprise"), ("joy", "sadness")]


def generate_demo_corpus(n: int = 3000, seed: int = 0) -> tuple[list[str], np.ndarray, list[str]]:
    """Return (texts, labels (n, 5) float32 0/1, label names). Same arguments, same corpus."""
    rng = random.Random(seed)
    texts, rows = [], []
    for _ in range(n):
        topic = rng.choice(_TOPICS)
        r = rng.random()
        if r < 0.06:
            texts.append(rng.choice(_NEUTRAL).format(t=topic))
            rows.append([0] * len(LABELS))
            continue
        emotions = list(rng.choice(_PAIRS)) if r < 0.32 else [rng.choice(LABELS)]
        parts = [f"{rng.choice(_CUES[e])} {topic}" for e in emotions]
        if len(parts) == 2:
            text = rng.choice(["{} and {}", "{}, but {}", "{}... {}", "{}; {}"]).format(*parts)
        else:
            text = parts[0]
        texts.append(text + rng.choice(_TAILS))
        rows.append([int(label in emotions) for label in LABELS])
    return texts, np.asarray(rows, dtype=np.float32), list(LABELS)
