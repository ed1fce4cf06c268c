"""Embed the runtime in your own FastAPI app. The product's HTTP service is `toolkit serve` (Ray Serve).

    TOOLKIT_EXPORT=exported/emotion uvicorn --app-dir examples serve:app --port 8000
"""
import os

from fastapi import FastAPI
from pydantic import BaseModel

from toolkit.runtime import EmotionClassifier

clf = EmotionClassifier.load(os.environ.get("TOOLKIT_EXPORT", "exported/emotion"))
app = FastAPI()


class Texts(BaseModel):
    texts: list[str]


@app.post("/predict")
def predict(body: Texts):  # a sync route runs on FastAPI's thread pool; the classifier is thread-safe
    return [{"labels": p.labels, "scores": p.scores} for p in clf.predict(body.texts)]
