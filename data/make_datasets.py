"""Generate the course's synthetic data, deterministically: `python data/make_datasets.py`.

Writes two things, both original to this course (licence: the project's own, see README):

- `data/corpus.txt`: plain English prose, short notes and forms on several lines (`key: value` lines, never the
  task's name / city / time triple), and a few JSON records about books and cities. The offline `tiny` profile's
  base model was pretrained on it, so that model knows words, names, days and times, line breaks and forms, but
  has never seen the fine-tuning task or its answers.
- `data/meetings/{train,validation,test}.jsonl`: the fine-tuning task (432 / 48 / 60 rows). Each row is a chat
  (`messages`): the user pastes a short meeting request after a `Message: ` label and asks for the name, city and
  time; the assistant answers with three `key: value` lines, which the evaluation parses and scores field by
  field. Validation and test use names that never occur in training (so both the eval loss and the test score see
  a model that memorised names), and a third of the test rows use phrasings that training never shows; each test
  row says which in its `group` field, so the test measures generalisation rather than memory, in two parts.
- `data/preferences/{train,test}.jsonl`: preference pairs for DPO (400 / 40), in TRL's conversational form
  (`prompt`, `chosen`, `rejected`, each a list of messages). The same task, with a preference SFT never taught:
  write the time line only when the message gives a time. Half the messages name no time; there the chosen answer
  stops after the city and the rejected one invents a time. The other half give a time; there the chosen answer
  has it and the rejected one leaves it out, so that the model learns the distinction rather than to drop the
  time everywhere. Each pair says which in its `group`; the test pairs use names training never shows.

Running the script twice gives byte-identical files (fixed seeds); a test checks that the shipped files match.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
SEED = 20261123

INSTRUCTION = "Extract the name, city and time from this message, one per line."

NAMES_TRAIN = """Aarav Abebe Ada Aiko Alba Alejandro Amara Anders Anika Arjun Astrid Bruno Camila Chen Chiara Dara
Diego Dmitri Elif Elena Emeka Esra Farah Felix Freya Gabriel Hana Hugo Ines Ingrid Ivan Jamal Jana Joao Jonas
Kai Kamala Karim Keiko Lars Leila Lena Liam Lucia Luca Maja Malik Marco Maria Mateo Mei Mina Nadia Nia Nikos
Noor Olga Omar Oskar Paolo Priya Rafael Ravi Rosa Sami Sara Selin Sofia Tariq Tomas Uma Valeria Wei Yara Yusuf
Zara Zoe Abel Adina Agnes Ahmed Aisha Akira Alan Alina Amir Ana Andrea Anton Aria Arturo Asha Aurora Ayla Basil
Bea Bilal Boris Carla Carmen Cecil Celia Dante Daria Dev Dina Dora Edgar Edith Eero Elsa Emma Enzo Erik Esme Ezra
Fabio Femi Filip Flora Gael Gemma Gia Greta Hamid Hanna Hiro Ida Ilan Ilse Imani Ira Iris Isak Jade Jago Joel Jude
Juno Kaito Kenji Kira Lale Lara Leon Levi Lina Lior Lola Lorenzo Luz Mara Milo Mira Moritz Nadim Nao Nell Nico Nina
Noah Odile Orla Otto Petra Pia Quinn Raj Rhea Rita Rumi Ruth Saul Selma Simon Sven Tara Teo Theo Tove Vera Vito""".split()
NAMES_VALIDATION = """Anouk Bruna Caius Delia Eamon Faye Gideon Hester Ilka Joris Kasimir Linnea Matteo Nerys Orson
Philippa""".split()
NAMES_TEST = """Adel Bianca Cyrus Dalia Emil Fatima Goran Helga Idris Julia Kofi Lotte Mirela Nils Ottilie Pedro
Rania Stefan Tamsin Viktor""".split()
CITIES_ALL = """Lisbon Oslo Nairobi Lima Hanoi Krakow Porto Accra Kyoto Quito Dublin Vienna Prague Athens Cairo Tunis
Dakar Lagos Seoul Osaka Manila Jakarta Perth Auckland Denver Boston Austin Chicago Toronto Montreal Havana Bogota
Santiago Madrid Seville Valencia Milan Naples Zurich Geneva Munich Hamburg Berlin Riga Tallinn Helsinki Bergen Lyon""".split()
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
TIMES = """8am 9am 10am 11am noon 1pm 2pm 3pm 4pm 5pm 6pm 7pm 8:30am 9:15am 9:45am 10:30am 11:15am 12:30pm
1:30pm 2:45pm 3:15pm 4:30pm 5:45pm 6:30pm""".split()

TEMPLATES_TRAIN = [
    "Hi, this is {name}. Could we meet in {city} at {time}?",
    "{name} here. Are you free in {city} at {time}?",
    "Hello! {name} would like to book a table in {city} for {time}.",
    "Can you pencil me in for {time} in {city}? Thanks, {name}",
    "Quick note from {name}: let's talk in {city} around {time}.",
    "Dear team, {name} asks to move the review to {city}, {time}.",
    "It's {name}. {city} at {time} works best for me.",
    "Good morning, {name} speaking. Is {time} in {city} okay for you?",
    "Reminder from {name}: our catch-up is in {city} at {time}.",
    "{name} would love to grab coffee in {city}, maybe at {time}?",
]
TEMPLATES_TEST_ONLY = [
    "Message from {name}: I can drop by the {city} office at {time}.",
    "{city} at {time}? Let me know. - {name}",
    "Hey, {name} again. What about {time} in {city}?",
]


def make_example(rng: random.Random, names: list[str], templates: list[str], group: str | None = None) -> dict:
    """One chat example: a meeting request in, the `key: value` answer out (and a group label, for test rows)."""
    fields = {"name": rng.choice(names), "city": rng.choice(CITIES_ALL), "time": rng.choice(TIMES)}
    message = rng.choice(templates).format(**fields)
    row = {
        "messages": [
            {"role": "user", "content": f"{INSTRUCTION}\n\nMessage: {message}"},
            {"role": "assistant", "content": "\n".join(f"{k}: {v}" for k, v in fields.items())},
        ]
    }
    return row | ({"group": group} if group else {})


def make_meetings(n_train: int = 432, n_validation: int = 48, n_test: int = 60) -> dict[str, list[dict]]:
    """Validation and test use names that training never shows, so both the eval loss and the test score see a model
    that memorised names instead of copying them; a third of test also uses phrasings training never shows, and each
    test row says which (its `group`), so 05_evaluation scores the two apart."""
    rng = random.Random(SEED)
    train = [make_example(rng, NAMES_TRAIN, TEMPLATES_TRAIN) for _ in range(n_train)]
    validation = [make_example(rng, NAMES_VALIDATION, TEMPLATES_TRAIN) for _ in range(n_validation)]
    n_unseen = n_test // 3
    test = [make_example(rng, NAMES_TEST, TEMPLATES_TRAIN, "seen phrasing") for _ in range(n_test - n_unseen)]
    test += [make_example(rng, NAMES_TEST, TEMPLATES_TEST_ONLY, "unseen phrasing") for _ in range(n_unseen)]
    rng.shuffle(test)
    return {"train": train, "validation": validation, "test": test}


# Meeting requests that name no time: the preference data's other half (the meetings data always names one).
TEMPLATES_NO_TIME = [
    "Hi, this is {name}. Could we meet in {city} sometime?",
    "{name} here. Are you free in {city} this week?",
    "Hello! {name} would like to book a table in {city}.",
    "Quick note from {name}: let's talk in {city} soon.",
    "It's {name}. {city} works best for me.",
    "Reminder from {name}: our catch-up is in {city}.",
    "Dear team, {name} asks to move the review to {city}.",
    "{name} would love to grab coffee in {city} one day.",
]


def make_pair(rng: random.Random, names: list[str], group: str) -> dict:
    """One preference pair: the answer with the time line exactly when the message has a time, against the other."""
    fields = {"name": rng.choice(names), "city": rng.choice(CITIES_ALL), "time": rng.choice(TIMES)}
    full = "\n".join(f"{k}: {v}" for k, v in fields.items())
    short = full.rsplit("\n", 1)[0]  # name and city only
    if group == "no time given":
        message, chosen, rejected = rng.choice(TEMPLATES_NO_TIME).format(**fields), short, full
    else:
        message, chosen, rejected = rng.choice(TEMPLATES_TRAIN).format(**fields), full, short
    return {"prompt": [{"role": "user", "content": f"{INSTRUCTION}\n\nMessage: {message}"}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}], "group": group}


def make_preferences(n_train: int = 400, n_test: int = 40) -> dict[str, list[dict]]:
    """Pairs for 08's DPO: half without a time, half with one; test pairs with the names training never shows."""
    rng = random.Random(SEED + 2)
    groups = ("no time given", "time given")
    train = [make_pair(rng, NAMES_TRAIN, groups[i % 2]) for i in range(n_train)]
    test = [make_pair(rng, NAMES_TEST, groups[i % 2]) for i in range(n_test)]
    rng.shuffle(train)
    return {"train": train, "test": test}


# --- the pretraining corpus -------------------------------------------------------------------------------
PLACES = "the library|the market|the harbour|the station|the park|the museum|the bakery|the river|the old bridge|the gym".split("|")
ACTIVITIES = "reads the news|walks the dog|waters the plants|calls a friend|writes letters|goes for a run|cooks soup|practises the piano|visits the market|fixes the bicycle".split("|")
THINGS = "a blue umbrella|a small notebook|two apples|a warm scarf|an old map|a cup of tea|a red kite|a box of pencils".split("|")
BOOKS = [("The Quiet Harbour", "Ines Moreau", 1998), ("Seven Bridges", "Tomasz Wrobel", 2004),
         ("A Map of Rain", "Keiko Tan", 2011), ("Letters from the Coast", "Ruth Adler", 1987),
         ("The Glass Orchard", "Samuel Obi", 2016), ("Winter Lanterns", "Maren Holt", 2020)]
CITIES = [("Lisbon", "Portugal"), ("Oslo", "Norway"), ("Nairobi", "Kenya"), ("Lima", "Peru"), ("Hanoi", "Vietnam"),
          ("Krakow", "Poland"), ("Porto", "Portugal"), ("Accra", "Ghana"), ("Kyoto", "Japan"), ("Quito", "Ecuador")]

# Each paragraph follows one person, so names, days and times recur within it: predicting them means looking
# back and copying, the skill (induction) that the fine-tuning task builds on. Real base models learn it from
# real text in the same way.
STORY = [
    "{name} lives in {city} and is always busy on {day}.",
    "On {day}, {name} usually {activity} at {time}.",
    "Every {day} morning {name} walks to {place} in {city} and stays until {time}.",
    "{name} found {thing} near {place} in {city} last {day}.",
    "{name} and {name2} met in {city} on {day}; they talked about the weather and the trains.",
    "At {time} the bells of {city} ring, and {name} stops to listen.",
    "{name} wrote in a diary: {city} was quiet, and the rain stopped at {time}.",
    "When the bus was late, {name} waited at {place} with {thing}.",
    "The train to {city} leaves at {time}, so {name} packs {thing} the night before.",
    "{name} likes {city} best, because {place} is calm and the light is soft.",
    "A letter arrived for {name} in {city}; it said the meeting room was free at {time}.",
    "Most weeks {name} {activity} before {time}, then goes to {place}.",
    "{name2} asked {name} about {city}, and {name} said {time} would be fine.",
    "By {time}, {name} was already home in {city} again.",
    "The message from {name} was short: {city} at {time}.",
    "Please reply to {name} before {time}, and only with the city.",
    "The name on the letter was {name}; the city was {city} and the time was {time}.",
    "{name} likes to extract the main points from every message and write them down, one per line.",
    "In the reply, {name} wrote the city first, then the time: {city}, {time}.",
    "Nobody else goes to {place} in {city}, but {name} does.",
    "A card on the desk read: name: {name}; city: {city}; time: {time}.",
    "The booking had three lines, name: {name}, city: {city} and time: {time}.",
]


# Now and then a short note on several lines, as real text has: the base model meets line breaks and words at the
# start of a line, and a name it read above comes back on a line of its own (a signature), to be copied.
NOTES = [
    "{name} wrote to {name2} from {city}:\nDear {name2},\nI will be in {city} on {day}.\nMy train arrives at {time}.\n"
    "See you soon,\n{name}",
    "To: {name2}\nFrom: {name}\nThe room at {place} in {city} is free on {day} at {time}.\nThanks,\n{name}",
    "{name} keeps a list for {day}:\n{activity} before {time}\ngo to {place}\nbuy {thing}\ncall {name2}",
    "Timetable for {city}, {day}\nfirst bus: {time}\nlast bus: {time2}\nAsk {name} at {place} for tickets.\n{name} "
    "opens the office at {time}.",
    "A postcard from {city}\nHello {name2}! The weather is fine and {place} is lovely on {day}.\nBack at {time},\n"
    "{name}",
    # forms: `key: value` lines (never the task's name / city / time triple in its order)
    "{name} filled in a form at {place}.\nname: {name}\nfrom: {city}\nday: {day}\nSigned by {name}.",
    "Weather for {day}\ncity: {city}\nsky: clear\nwind: light\n{name} reads it at {time}.",
    "{name} checked the timetable in {city}.\ntime: {time}\nplatform: two\nThe train was late, said {name}.",
    "Lost and found at {place}\nitem: {thing}\nfound by: {name}\ncity: {city}\nCall {name} after {time}.",
]


def make_corpus(n_paragraphs: int = 1500) -> str:
    """Plain prose plus a few JSON records: everyday words, names, days and times, never the task itself."""
    rng = random.Random(SEED + 1)
    names = NAMES_TRAIN + NAMES_VALIDATION + NAMES_TEST
    paragraphs = []
    for i in range(n_paragraphs):
        slots = dict(name=rng.choice(names), name2=rng.choice(names), day=rng.choice(DAYS), time=rng.choice(TIMES),
                     city=rng.choice(CITIES_ALL),
                     place=rng.choice(PLACES), activity=rng.choice(ACTIVITIES), thing=rng.choice(THINGS))
        if i % 4 == 3:
            paragraphs.append(rng.choice(NOTES).format(**slots, time2=rng.choice(TIMES)))
            continue
        sentences = [s.format(**slots) for s in rng.sample(STORY, 6)]
        paragraphs.append(" ".join(sentences))
        if i % 10 == 9:  # now and then a record copied into JSON, so the base model has seen braces and quotes
            if rng.random() < 0.5:
                title, author, year = rng.choice(BOOKS)
                paragraphs.append(f"{author} wrote {title} in {year}. "
                                  + json.dumps({"title": title, "author": author, "year": year}))
            else:
                city, country = rng.choice(CITIES)
                paragraphs.append(f"{city} is a city in {country}. " + json.dumps({"city": city, "country": country}))
    return "\n\n".join(paragraphs) + "\n"


TOOLS = [
    {"type": "function", "function": {
        "name": "book_room", "description": "Book a meeting room.", "parameters": {"type": "object", "properties": {
            "name": {"type": "string"}, "city": {"type": "string"}, "time": {"type": "string"}}}}},
    {"type": "function", "function": {
        "name": "get_weather", "description": "Today's weather in a city.", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}}}},
]
WEATHER = ["sunny, 21 C", "light rain, 12 C", "cloudy, 16 C", "windy, 9 C", "snow, -2 C", "clear, 25 C"]


def make_tool_use(n: int = 120) -> list[dict]:
    """Tool-use conversations in OpenAI's chat format, as many public datasets write them: `tools` definitions, an
    assistant `tool_calls` turn (arguments as JSON text), the `tool` result, and the reply built from it. A quarter
    open with a greeting whose reply has `"weight": 0`: context, never a target."""
    rng = random.Random(SEED + 2)  # its own stream: the meeting and preference data stay as they are
    rows = []
    for k in range(n):
        if k % 3:
            fields = {"name": rng.choice(NAMES_TRAIN), "city": rng.choice(CITIES_ALL), "time": rng.choice(TIMES)}
            ask = "Book a room for this meeting: " + rng.choice(TEMPLATES_TRAIN).format(**fields)
            call, room = ("book_room", fields), f"R{rng.randint(1, 40)}"
            result = {"room": room, "status": "booked"}
            reply = f"Booked room {room} for {fields['name']} in {fields['city']} at {fields['time']}."
        else:
            city = rng.choice(CITIES_ALL)
            ask = rng.choice(["What is the weather in {c}?", "Weather in {c} today?", "Is it cold in {c}?"]).format(c=city)
            call, result = ("get_weather", {"city": city}), {"city": city, "forecast": rng.choice(WEATHER)}
            reply = f"In {city} today: {result['forecast']}."
        call_id = f"call_{k}"
        messages = [{"role": "user", "content": ask},
                    {"role": "assistant", "content": None, "tool_calls": [{"id": call_id, "type": "function", "function": {
                        "name": call[0], "arguments": json.dumps(call[1])}}]},
                    {"role": "tool", "tool_call_id": call_id, "content": json.dumps(result)},
                    {"role": "assistant", "content": reply}]
        if k % 4 == 0:
            messages = [{"role": "user", "content": "Hello!"},
                        {"role": "assistant", "content": "Hello! How can I help?", "weight": 0}] + messages
        rows.append({"tools": TOOLS, "messages": messages})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    (DATA_DIR / "corpus.txt").write_text(make_corpus(), encoding="utf-8", newline="\n")
    for split, rows in make_meetings().items():
        write_jsonl(DATA_DIR / "meetings" / f"{split}.jsonl", rows)
    for split, rows in make_preferences().items():
        write_jsonl(DATA_DIR / "preferences" / f"{split}.jsonl", rows)
    write_jsonl(DATA_DIR / "tool_use" / "train.jsonl", make_tool_use())
    print(f"wrote {DATA_DIR / 'corpus.txt'}, {DATA_DIR / 'meetings'}/{{train,validation,test}}.jsonl, "
          f"{DATA_DIR / 'preferences'}/{{train,test}}.jsonl and {DATA_DIR / 'tool_use'}/train.jsonl")


if __name__ == "__main__":
    main()
