"""Seeded multi-turn task dialogues in which the user fills slots: a restaurant search whose constraints arrive one
at a time ("What part of town?" "The west."), and a phone assistant that asks which contact, which number, which
story. ``SlotDialogGenerator`` (recipe kind ``slotdialog``).

The task and assistant generators (``taskdialog``) have one exchange and one wording per follow-up; a model trained
on them resolves "The second one." but not "Brooks." or "Maybe British food.". Here histories run one to three
exchanges, a fragment answers the assistant's question and becomes the full request it completes, each follow-up
has several wordings, and half the queries stand alone (many of them naming the venue or contact just offered, so
"related" never means "rewrite"). Held-out splits draw venues, people, songs, cities and tasks training never saw.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .dataset import RewriteRecord, record_from_turns
from .taskdialog import split_pools

Turns = list[tuple[str, str]]
#: (history, query, rewrite); rewrite == query for a query that stands alone
Dialogue = tuple[Turns, str, str]

_POOLS = {  # entity pools: even positions train, odd positions are held out
    "venue": [
        "the Golden Curry",
        "Pipasha",
        "the Lucky Star",
        "Saint Johns Chop House",
        "Curry Prince",
        "Meghna",
        "the Gardenia",
        "Rice Boat",
        "Da Vinci Pizzeria",
        "Nandos City Centre",
        "the Copper Kettle",
        "Bedouin",
        "Charlie Chan",
        "the Varsity",
        "Yu Garden",
        "Cotto",
        "Frankie and Bennys",
        "Hotpot Palace",
        "the Oak Bistro",
        "Galleria",
        "Sitar Tandoori",
        "Royal Standard",
        "Efes",
        "Kohinoor",
    ],
    "first": [
        "Rachel",
        "Omar",
        "Julia",
        "Marcus",
        "Sofia",
        "Ethan",
        "Priya",
        "Lucas",
        "Hannah",
        "Diego",
        "Grace",
        "Noah",
        "Chloe",
        "Samuel",
        "Mia",
        "Victor",
    ],
    "last": [
        "Adams",
        "Brooks",
        "Carter",
        "Diaz",
        "Evans",
        "Fischer",
        "Gupta",
        "Hall",
        "Ito",
        "Jensen",
        "Khan",
        "Lewis",
        "Moreno",
        "Novak",
        "Owens",
        "Price",
    ],
    "contact": [
        ("my sister", "her"),
        ("my brother", "him"),
        ("Aunt Linda", "her"),
        ("Coach Reed", "him"),
        ("my wife", "her"),
        ("my boss", "him"),
        ("Grandpa", "him"),
        ("Maria", "her"),
        ("Uncle Joe", "him"),
        ("Dr. Shah", "her"),
        ("Steve", "him"),
        ("Olivia", "her"),
    ],
    "song": [
        ("Levitating", "Dua Lipa"),
        ("Bad Guy", "Billie Eilish"),
        ("Shallow", "Lady Gaga"),
        ("Hey Jude", "The Beatles"),
        ("Blinding Lights", "The Weeknd"),
        ("Rolling in the Deep", "Adele"),
        ("Firework", "Katy Perry"),
        ("Thunderstruck", "AC/DC"),
        ("Dancing Queen", "ABBA"),
        ("Viva la Vida", "Coldplay"),
        ("Uptown Funk", "Bruno Mars"),
        ("Wonderwall", "Oasis"),
    ],
    "city": [
        "Toronto",
        "Dallas",
        "Phoenix",
        "Madrid",
        "Berlin",
        "Houston",
        "Sydney",
        "Dublin",
        "Oslo",
        "Lisbon",
        "Denver",
        "Nashville",
    ],
    "task": [
        "call the plumber",
        "feed the cat",
        "renew my passport",
        "return the library books",
        "buy a birthday card",
        "check the oven",
        "pick up the dry cleaning",
        "move the car",
        "email the landlord",
        "charge my laptop",
        "book a haircut",
        "pay the water bill",
    ],
    "topic": [
        ("the Olympics", "Team USA wins relay gold", "Record crowd at the marathon"),
        ("the economy", "Inflation cools to two percent", "Jobless claims fall again"),
        ("space", "Probe reaches Jupiter's moon", "Crew returns from the station"),
        ("tennis", "Top seed knocked out in Paris", "Teenager reaches the semifinal"),
        ("the weather", "Storm heads for the coast", "Heat wave breaks records"),
        ("technology", "New phone launch delayed", "Chip maker posts record profit"),
    ],
}
_VALUES = {  # attribute values: shared by both splits
    "food": ["Thai", "Italian", "Indian", "Chinese", "British", "Spanish", "Korean", "Turkish", "French", "Lebanese"],
    "area": ["north", "south", "east", "west", "centre"],
    "price": ["cheap", "moderately priced", "expensive"],
    "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "time": ["7am", "8:15am", "11am", "12:30pm", "2pm", "4:45pm", "6pm", "7:30pm", "9pm"],
    "n": ["two", "three", "four", "five", "six"],
    "cond": ["light rain", "sunshine", "clouds", "snow showers", "strong winds"],
    "temp": ["12", "18", "23", "27", "31"],
    "playlist": ["workout", "road trip", "chill", "party", "study"],
    "number": ["mobile", "work", "home"],
    "source": ["the BBC", "Reuters", "the Guardian", "AP"],
    "reply": ["sounds good", "I'm on my way", "see you at six", "no problem"],
    "msg": ["the meeting moved to 3", "dinner is at eight", "I landed safely", "the keys are under the mat"],
}


#: A constraint changed after "no match": (the query's wording, its rewrite with the full description ``{d}``).
_CHANGED_CONSTRAINT = {
    "food": [
        ("How about {v}?", "How about {d}?"),
        ("What about {v} food?", "What about {d}?"),
        ("Try {v} then.", "Try {d} then."),
    ],
    "area": [
        ("What about the {v}?", "What about {d}?"),
        ("Is there one in the {v}?", "Is there {d}?"),
        ("How about the {v} then?", "How about {d}?"),
    ],
    "price": [
        ("Is there a {v} one?", "Is there {d}?"),
        ("What about {v}?", "What about {d}?"),
        ("OK, something {v} then.", "OK, {d} then."),
    ],
}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


class SlotDialogGenerator:
    """``generate(n)``: n English records, about half ``unchanged``; identical for the same seed and split."""

    def __init__(self, seed: int = 0, split: str = "train") -> None:
        self.split = split
        self.rng = random.Random(f"slotdialog-{seed}-{split}")
        self.pools = split_pools(_POOLS, split)
        self.scenarios: list[Callable[[], Dialogue]] = [
            self._restaurant,
            self._restaurant,
            self._restaurant,
            self._contact,
            self._number,
            self._message,
            self._music,
            self._weather,
            self._reminder,
            self._news,
        ]

    def pick(self, key: str, k: int = 1) -> list:
        pool = self.pools.get(key) or _VALUES[key]
        return self.rng.sample(pool, k)

    def one(self, *options: str) -> str:
        return self.rng.choice(options)

    def _asked_or_full(self, turns: Turns, query: str, rewrite: str) -> Dialogue:
        """The short query with its rewrite, or (45%) the user saying it in full: a query that stands alone."""
        if self.rng.random() < 0.45:
            return turns, rewrite, rewrite
        return turns, query, rewrite

    def _follow_up(
        self, turns: Turns, pairs: list[tuple[str, str]], standalone: list[str], standalone_share: float = 0.45
    ) -> Dialogue:
        """A standalone query (kept as it is) or one of the follow-ups with its rewrite."""
        if self.rng.random() < standalone_share:
            query = self.rng.choice(standalone)
            return turns, query, query
        return (turns, *self.rng.choice(pairs))

    # -- restaurants: constraints one at a time, then the venue offered, two offered, or none -------------------
    @staticmethod
    def _describe(c: dict[str, str]) -> str:
        """'a cheap Thai restaurant in the west' from the constraints given so far."""
        words = [w for w in (c.get("price"), c.get("food")) if w]
        text = " ".join([*words, "restaurant"])
        text = ("an " if text[0] in "aeiouAEIOU" else "a ") + text
        return text + (f" in the {c['area']}" if "area" in c else "")

    def _restaurant(self) -> Dialogue:
        frame = self.one(
            "I'm looking for {d}.",
            "Can you find me {d}?",
            "I need {d}, please.",
            "Is there {d}?",
            "I want to find {d}.",
        )
        keys = ["food", "area", "price"]
        given = self.rng.sample(keys, self.rng.choice([1, 1, 2]))
        c = {k: self.pick(k)[0] for k in given}
        turns: Turns = [("user", frame.format(d=self._describe(c)))]
        missing = [k for k in keys if k not in c]
        ask = {
            "area": ["What part of town do you have in mind?", "Which area would you like?", "Any preference on area?"],
            "food": ["What type of food would you like?", "What kind of cuisine are you after?"],
            "price": ["What price range are you looking for?", "Do you have a price range in mind?"],
        }
        if missing and self.rng.random() < 0.75:
            key = self.rng.choice(missing)
            value = self.pick(key)[0]
            turns.append(("assistant", self.one(*ask[key])))
            fragments = {
                "area": ["The {v}.", "{V}, please.", "In the {v}.", "The {v} part of town.", "Somewhere in the {v}."],
                "food": ["{V}.", "{V} food, please.", "I'd like {v}.", "Maybe {v} food.", "{V} would be nice."],
                "price": ["{V}.", "Something {v}.", "{V}, please.", "Make it {v}."],
            }[key]
            fragment = self.one(*fragments).format(v=value, V=_cap(value))
            c[key] = value
            full = frame.format(d=self._describe(c))
            if self.rng.random() < 0.45:  # the query is the answer itself
                if self.rng.random() < 0.3:  # answered in full: it stands alone
                    return turns, full, full
                return turns, fragment, full
            turns.append(("user", fragment))
        venue, venue2 = self.pick("venue", 2)
        for k in keys:
            c.setdefault(k, self.pick(k)[0])
        food, area, price = c["food"], c["area"], c["price"]
        outcome = self.rng.random()
        if outcome < 0.25:  # nothing matches: the user changes one constraint
            turns.append(("assistant", f"Sorry, there is no {self._describe(c)[2:]}. Would you like something else?"))
            key = self.rng.choice(keys)
            other = self.rng.choice([v for v in _VALUES[key] if v != c[key]])
            changed = self._describe(c | {key: other})
            # one wording drawn per constraint, whichever changes (so the committed mixes reproduce)
            short, long = {k: self.rng.choice(wordings) for k, wordings in _CHANGED_CONSTRAINT.items()}[key]
            return self._asked_or_full(turns, short.format(v=other), long.format(d=changed))
        if outcome < 0.45:  # two offered: one picked by position
            turns.append(
                (
                    "assistant",
                    self.one(
                        f"There are two: {venue} and {venue2}. Would you like details on either?",
                        f"I found {venue} and {venue2}. Which would you prefer?",
                    ),
                )
            )
            first = self.rng.random() < 0.5
            which, named = ("first", venue) if first else (self.one("second", "last"), venue2)
            pairs = [
                (f"What is the address of the {which} one?", f"What is the address of {named}?"),
                (f"Tell me more about the {which} one.", f"Tell me more about {named}."),
                (f"The {which} one. What's their phone number?", f"What's the phone number of {named}?"),
                (f"Book the {which} one for {{n}} people.", f"Book {named} for {{n}} people."),
            ]
            short, rewrite = self.rng.choice(pairs)
            n = self.pick("n")[0]
            short, rewrite = short.format(n=n), rewrite.format(n=n)
            return self._asked_or_full(turns, short, rewrite)
        turns.append(
            (
                "assistant",
                self.one(
                    f"{_cap(venue)} is {self._describe(c)}.",
                    f"I recommend {venue}. It serves {food} food in the {area} and is {price}.",
                    f"How about {venue}? It is a {price} {food} place in the {area}.",
                    f"{_cap(venue)} matches. It's in the {area} and serves {food} food.",
                ),
            )
        )
        n, day, time = self.pick("n")[0], self.pick("day")[0], self.pick("time")[0]
        follow = [
            ("What is their phone number?", f"What is the phone number of {venue}?"),
            ("What's the address?", f"What's the address of {venue}?"),
            ("Can I have the address and phone number?", f"Can I have the address and phone number of {venue}?"),
            ("And the postcode?", f"What is the postcode of {venue}?"),
            ("Is it expensive?", f"Is {venue} expensive?"),
            ("What kind of food do they serve?", f"What kind of food does {venue} serve?"),
            ("Where is it located?", f"Where is {venue} located?"),
            (f"Book a table there for {n} at {time}.", f"Book a table at {venue} for {n} at {time}."),
            (f"Please book it for {n} people on {day}.", f"Please book {venue} for {n} people on {day}."),
            (f"Great, can you reserve it for {day} at {time}?", f"Great, can you reserve {venue} for {day} at {time}?"),
        ]
        standalone = [
            "Thank you, that's all I need.",
            "Thanks, goodbye.",
            f"I also need a taxi to the station at {time}.",
            f"I'm also looking for a {self.pick('price')[0]} hotel in the {self.pick('area')[0]}.",
            f"Can you book a table at {venue} for {n} on {day}?",
            f"What is the phone number of {venue}?",
        ]
        return self._follow_up(turns, follow, standalone, standalone_share=0.5)

    # -- a phone assistant ---------------------------------------------------------------------------------------
    def _contact(self) -> Dialogue:
        first, (last, last2) = self.pick("first")[0], self.pick("last", 2)
        verb = self.one("Call", "Phone", "Ring", "Text", "Message", "Dial")
        turns: Turns = [
            ("user", self.one(f"{verb} {first}.", f"{verb} {first} please.", f"Can you {verb.lower()} {first}?")),
            (
                "assistant",
                self.one(
                    f"I found {first} {last} and {first} {last2}. Which one?",
                    f"Which {first}: {first} {last} or {first} {last2}?",
                    f"There are two contacts named {first}, {first} {last} and {first} {last2}. Which one?",
                ),
            ),
        ]
        pick_second = self.rng.random() < 0.6
        chosen = last2 if pick_second else last
        query = self.one(
            f"{chosen}.",
            f"{first} {chosen}.",
            f"{chosen}, please.",
            "The second one." if pick_second else "The first one.",
            "The second." if pick_second else "The first.",
        )
        rewrite = f"{verb} {first} {chosen}."
        return self._asked_or_full(turns, query, rewrite)

    def _number(self) -> Dialogue:
        (contact, _), (kind, kind2) = self.pick("contact")[0], self.rng.sample(_VALUES["number"], 2)
        verb = self.one("Call", "Dial", "Phone")
        turns: Turns = [
            ("user", f"{verb} {contact}."),
            ("assistant", f"{_cap(contact)} has a {kind} number and a {kind2} number. Which one?"),
        ]
        query = self.one(f"{_cap(kind)}.", f"The {kind} one.", f"{_cap(kind)}, please.", f"The {kind} number.")
        rewrite = f"{verb} {contact}'s {kind} number."
        return self._asked_or_full(turns, query, rewrite)

    def _message(self) -> Dialogue:
        (contact, pron), (other, _) = self.pick("contact", 2)
        msg, reply = self.pick("msg")[0], self.pick("reply")[0]
        if self.rng.random() < 0.5:
            turns: Turns = [
                ("user", self.one("Read my new messages.", "Do I have any messages?")),
                ("assistant", f"You have one new message from {contact}: {msg}."),
            ]
            pairs = [
                (f"Reply saying {reply}.", f"Reply to {contact} saying {reply}."),
                (f"Tell {pron} {reply}.", f"Tell {contact} {reply}."),
                (f"Call {pron} back.", f"Call {contact} back."),
                (f"Forward it to {other}.", f"Forward the message from {contact} to {other}."),
            ]
            standalone = [f"Text {other} that {msg}.", "Thanks."]
        else:
            time = self.pick("time")[0]
            turns = [
                ("user", self.one("Did I miss any calls?", "Any missed calls?")),
                ("assistant", f"You missed a call from {contact} at {time}."),
            ]
            pairs = [
                (f"Call {pron} back.", f"Call {contact} back."),
                (f"Text {pron} that {msg}.", f"Text {contact} that {msg}."),
                (f"Send {pron} a message saying {reply}.", f"Send {contact} a message saying {reply}."),
            ]
            standalone = [f"Call {other}.", "OK, thanks."]
        return self._follow_up(turns, pairs, standalone)

    def _music(self) -> Dialogue:
        (song, artist), (song2, _) = self.pick("song", 2)
        playlist = self.pick("playlist")[0]
        turns: Turns = [
            ("user", self.one(f"Play {song}.", f"Put on {song} by {artist}.", "Play something I like.")),
            ("assistant", f"Playing {song} by {artist}."),
        ]
        pairs = [
            ("Who sings it?", f"Who sings {song}?"),
            (f"Add this to my {playlist} playlist.", f"Add {song} by {artist} to my {playlist} playlist."),
            (f"Put it on my {playlist} playlist.", f"Put {song} by {artist} on my {playlist} playlist."),
            ("Play something else by them.", f"Play something else by {artist}."),
            ("Repeat this song.", f"Repeat {song}."),
            ("Like this song.", f"Like {song} by {artist}."),
            ("What album is it from?", f"What album is {song} from?"),
        ]
        standalone = [f"Play {song2}.", "Turn the volume down.", "Pause.", f"Shuffle my {playlist} playlist."]
        return self._follow_up(turns, pairs, standalone)

    def _weather(self) -> Dialogue:
        city, city2 = self.pick("city", 2)
        day, day2 = self.rng.sample(_VALUES["day"], 2)
        cond, temp = self.pick("cond")[0], self.pick("temp")[0]
        ask = self.one("What's", "How's")
        turns: Turns = [
            ("user", f"{ask} the weather in {city} on {day}?"),
            ("assistant", f"On {day} in {city} expect {cond} with a high of {temp} degrees."),
        ]
        pairs = [
            (f"And {day2}?", f"{ask} the weather in {city} on {day2}?"),
            (f"What about in {city2}?", f"{ask} the weather in {city2} on {day}?"),
            ("Will I need an umbrella?", f"Will I need an umbrella in {city} on {day}?"),
            ("Should I bring a jacket there?", f"Should I bring a jacket in {city} on {day}?"),
            ("How windy will it be?", f"How windy will it be in {city} on {day}?"),
            ("What's the low?", f"What's the low in {city} on {day}?"),
        ]
        standalone = [f"What's the weather in {city2} this weekend?", f"Will it snow in {city2} tomorrow?", "Thanks."]
        return self._follow_up(turns, pairs, standalone)

    def _reminder(self) -> Dialogue:
        task, task2 = self.pick("task", 2)
        day, day2 = self.rng.sample(_VALUES["day"], 2)
        time, time2 = self.rng.sample(_VALUES["time"], 2)
        if self.rng.random() < 0.6:
            turns: Turns = [
                ("user", f"Remind me to {task} on {day} at {time}."),
                ("assistant", self.one(f"Reminder set: {task}, {day} at {time}.", f"OK, reminder set for {day}.")),
            ]
            pairs = [
                (f"Make it {time2} instead.", f"Make the reminder to {task} {time2} instead."),
                ("Cancel it.", f"Cancel the reminder to {task}."),
                (f"Move it to {day2}.", f"Move the reminder to {task} to {day2}."),
                (f"Actually, push that to {day2}.", f"Actually, push the reminder to {task} to {day2}."),
            ]
            standalone = [f"Remind me to {task2} tomorrow.", "What reminders do I have today?"]
        else:
            turns = [("user", f"Wake me up at {time}."), ("assistant", f"Alarm set for {time}.")]
            pairs = [
                (f"Make that {time2}.", f"Make the alarm {time2}."),
                ("Turn it off.", f"Turn off the alarm for {time}."),
                ("Cancel it.", f"Cancel the alarm for {time}."),
            ]
            standalone = [f"Set a timer for {self.pick('n')[0]} minutes.", f"Remind me to {task2} at {time2}."]
        return self._follow_up(turns, pairs, standalone)

    def _news(self) -> Dialogue:
        (topic, head, head2), (topic2, _, _) = self.pick("topic", 2)
        source = self.pick("source")[0]
        turns: Turns = [
            ("user", self.one(f"Any news on {topic}?", f"What's new with {topic}?")),
            ("assistant", f"Top stories on {topic}: {head}; {head2}."),
        ]
        pairs = [
            ("Read the second story.", f"Read the story {head2}."),
            ("More on the first one.", f"More on {head}."),
            (f"What does {source} say about that?", f"What does {source} say about {topic}?"),
            ("Read me the last one.", f"Read me the story {head2}."),
        ]
        standalone = [f"Any news on {topic2}?", "Read me today's headlines.", "That's enough news, thanks."]
        return self._follow_up(turns, pairs, standalone)

    def generate(self, n: int) -> list[RewriteRecord]:
        records = []
        for i in range(n):
            turns, query, rewrite = self.rng.choice(self.scenarios)()
            label = "unchanged" if rewrite == query else "rewritten"
            records.append(
                record_from_turns(
                    f"slot-{self.split}-{i:05d}", "en", [*turns, ("user", query)], rewrite, label, "synthetic:slot"
                )
            )
        return records
