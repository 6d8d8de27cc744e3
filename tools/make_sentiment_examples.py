"""Writes examples/sentiment/{train,test}.csv: short product and film reviews labelled
positive or negative, composed from hand-written phrases (CC0, written for bertscope), for the
fine-tuning example and its test. Deterministic: the same files every run."""
import csv
import random
from pathlib import Path

SUBJECTS = ["the film", "this movie", "the book", "this phone", "the restaurant", "the hotel",
            "the album", "this game", "the service", "the laptop", "the show", "this camera",
            "the coffee", "the concert", "the course", "this app"]
POSITIVE = ["was wonderful", "is excellent", "was a delight", "works perfectly", "is brilliant",
            "exceeded my expectations", "was great fun", "is beautifully made", "made me happy",
            "is worth every penny", "was truly amazing", "felt fantastic", "is superb",
            "was lovely from start to finish", "is the best I have tried"]
NEGATIVE = ["was terrible", "is awful", "was a waste of time", "broke after a day",
            "is boring", "fell far short", "was painfully dull", "is badly made",
            "made me angry", "is not worth the money", "was truly disappointing", "felt cheap",
            "is the worst I have tried", "was a mess from start to finish", "is useless"]
OPENERS = ["", "Honestly, ", "I think ", "Overall ", "To be fair, ", "In my opinion ", "Well, "]
CLOSERS = [".", "!", ". I would say so again.", ", really.", ". That is all.", " this year."]


def sentence(rng, phrases):
    text = f"{rng.choice(OPENERS)}{rng.choice(SUBJECTS)} {rng.choice(phrases)}{rng.choice(CLOSERS)}"
    return text[0].upper() + text[1:]


def main():
    rng = random.Random(7)
    rows, seen = [], set()
    while len(rows) < 400:
        label = rng.choice(["positive", "negative"])
        text = sentence(rng, POSITIVE if label == "positive" else NEGATIVE)
        if text not in seen:
            seen.add(text)
            rows.append((text, label))
    folder = Path(__file__).resolve().parent.parent / "examples" / "sentiment"
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("train.csv", rows[:300]), ("test.csv", rows[300:])):
        with open(folder / name, "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["text", "label"])
            writer.writerows(part)


if __name__ == "__main__":
    main()
