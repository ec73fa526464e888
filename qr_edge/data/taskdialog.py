"""Seeded generators of task-oriented dialogues: bookings, venues, travel and support (en and zh), and a phone
assistant with restaurant searches (en, ``AssistantDialogGenerator``).

In such dialogues about half the user turns are self-contained requests ("I need a taxi to the
station at 18:00") that must stay unchanged, and the rest point at the venue the assistant just
offered ("Does it have parking?"). The generic generator has few of the first kind; this one
balances them, so a fine-tuned rewriter learns when *not* to rewrite.
"""

from __future__ import annotations

import random

from .dataset import RewriteRecord, record_from_turns

_EN = {
    "restaurant": {
        "names": [
            "the Golden Wok",
            "Bella Napoli",
            "Curry Garden",
            "the Copper Kettle",
            "Saffron House",
            "Little Seoul",
            "the Blue Olive",
            "Pho Saigon",
            "Casa Lucia",
            "the Red Lantern",
            "Nandos Riverside",
            "Bistro Verde",
        ],
        "ask": [
            "I'm looking for a {adj} {kind} restaurant in the {area}.",
            "Can you find me a {kind} place to eat in the {area}?",
            "I want to eat {kind} food tonight, something {adj}.",
            "Is there a {adj} restaurant serving {kind} food?",
        ],
        "offer": [
            "{E} serves {kind} food in the {area} and is {adj}.",
            "I recommend {E}, a {adj} {kind} restaurant in the {area}.",
            "{E} is a popular {kind} restaurant in the {area}. Would you like to book it?",
        ],
        "refer": [
            ("What is the address of {e}?", "What is the address?"),
            ("What is the phone number of {e}?", "What's their phone number?"),
            ("Book a table at {e} for {n} people at {t}.", "Book a table there for {n} people at {t}."),
            ("Does {e} have vegetarian options?", "Does it have vegetarian options?"),
            ("What is the postcode of {e}?", "And the postcode?"),
            ("Is {e} open on {d}?", "Is it open on {d}?"),
            ("Can I get a table at {e} on {d} at {t}?", "Can I get a table on {d} at {t}?"),
            ("How expensive is {e}?", "How expensive is it?"),
        ],
    },
    "hotel": {
        "names": [
            "the Acorn Guest House",
            "the Riverside Hotel",
            "Hamilton Lodge",
            "the Lensfield Hotel",
            "Alpha Milton Inn",
            "the Gonville Hotel",
            "Archway House",
            "the Cityroomz",
            "Ashley Court",
            "the Harbour View Inn",
        ],
        "ask": [
            "I need a {adj} hotel in the {area} with free wifi.",
            "Find me a place to stay in the {area}, {adj} please.",
            "I'm looking for a {adj} guesthouse with free parking.",
            "Are there any {adj} hotels in the {area}?",
        ],
        "offer": [
            "{E} is a {adj} hotel in the {area} with free wifi.",
            "I found {E}, a {adj} guesthouse in the {area}.",
            "{E} has rooms available and is {adj}. Shall I book it?",
        ],
        "refer": [
            ("Does {e} have free parking?", "Does it have free parking?"),
            ("What is the star rating of {e}?", "How many stars does it have?"),
            ("Book {e} for {n} people for {k} nights from {d}.", "Book it for {n} people for {k} nights from {d}."),
            ("What is the address of {e}?", "What's the address?"),
            ("Does {e} include breakfast?", "Is breakfast included?"),
            ("Is {e} available on {d}?", "Is it available on {d}?"),
            ("What is the phone number of {e}?", "Can I have the phone number?"),
        ],
    },
    "attraction": {
        "names": [
            "the Fitzwilliam Museum",
            "Kings College Chapel",
            "the Botanic Garden",
            "the Corn Exchange",
            "Jesus Green Pool",
            "the Castle Mound",
            "the Science Museum",
            "Riverside Park",
            "the Old Theatre",
            "the City Gallery",
        ],
        "ask": [
            "What attractions are there in the {area}?",
            "Can you suggest something to visit in the {area}?",
            "I'd like to see a museum in the {area}.",
            "Is there anything fun to do in the {area}?",
        ],
        "offer": [
            "{E} is in the {area} and entrance is free.",
            "You could visit {E} in the {area}.",
            "I suggest {E}, it is very popular.",
        ],
        "refer": [
            ("What is the entrance fee of {e}?", "What is the entrance fee?"),
            ("What are the opening hours of {e}?", "When does it open?"),
            ("What is the address of {e}?", "Where is it exactly?"),
            ("Is {e} open on {d}?", "Is it open on {d}?"),
            ("Is {e} suitable for children?", "Is it good for kids?"),
        ],
    },
}
_EN_STANDALONE = [
    "I need a taxi from {e2} to the train station at {t}.",
    "I also need a train from Cambridge to London on {d}.",
    "Can you book a table for {n} at Curry Garden at {t} on {d}?",
    "I'm also looking for a cheap hotel in the north.",
    "I need to leave after {t} on {d}.",
    "Please book a taxi to the airport for {t}.",
    "What time does the last train to Ely leave?",
    "I would like to find a museum in the centre of town.",
    "Thank you, that is all I need.",
    "No, that's everything, thanks.",
    "Can you help me reset my account password?",
    "I want to cancel my order from last week.",
    "How do I change my delivery address?",
    "Is there a pharmacy open near the city centre?",
    "I need a hotel with free parking for {k} nights.",
    "I'd like to book a train to Stansted Airport on {d}.",
    "Great, thanks for your help!",
    "Please find me an Indian restaurant in the east.",
]
_ZH = {
    "restaurant": {
        "names": [
            "金龙酒家",
            "老北京烤鸭店",
            "川味小馆",
            "海底捞望京店",
            "外婆家",
            "绿茶餐厅",
            "西贝莜面村",
            "鼎泰丰",
            "小南国",
            "太二酸菜鱼",
        ],
        "ask": [
            "我想找一家{area}的{kind}餐厅。",
            "{area}附近有什么{adj}的{kind}馆子？",
            "帮我推荐一家{adj}的{kind}店。",
        ],
        "offer": [
            "{E}在{area}，是一家{adj}的{kind}餐厅。",
            "推荐{E}，{kind}做得很好，价格也{adj}。",
            "{E}离你很近，要帮你订位吗？",
        ],
        "refer": [
            ("{e}的地址在哪里？", "地址在哪里？"),
            ("帮我订{e}{d}{t}的{n}人桌。", "帮我订{d}{t}的{n}人桌。"),
            ("{e}的电话是多少？", "电话是多少？"),
            ("{e}有包间吗？", "有包间吗？"),
            ("{e}{d}营业吗？", "{d}营业吗？"),
            ("{e}人均多少钱？", "人均多少钱？"),
        ],
    },
    "hotel": {
        "names": [
            "如家酒店",
            "汉庭快捷酒店",
            "希尔顿酒店",
            "锦江之星",
            "全季酒店",
            "亚朵酒店",
            "维也纳酒店",
            "桔子水晶酒店",
        ],
        "ask": ["我需要一家{area}的{adj}酒店。", "{area}有没有{adj}的宾馆？", "帮我找个{area}附近的酒店住。"],
        "offer": ["{E}在{area}，{adj}，有免费无线网络。", "可以考虑{E}，离{area}很近。", "{E}还有空房，需要预订吗？"],
        "refer": [
            ("{e}有免费停车吗？", "有免费停车吗？"),
            ("帮我订{e}{d}入住{k}晚，{n}个人。", "帮我订{d}入住{k}晚，{n}个人。"),
            ("{e}含早餐吗？", "含早餐吗？"),
            ("{e}是几星级的？", "它是几星级的？"),
            ("{e}的地址是什么？", "地址是什么？"),
        ],
    },
}
_ZH_STANDALONE = [
    "帮我叫一辆{t}去火车站的出租车。",
    "我还需要订一张{d}去上海的高铁票。",
    "谢谢，没有别的事了。",
    "好的，谢谢你！",
    "我想取消上周的订单。",
    "怎么修改收货地址？",
    "附近有没有24小时营业的药店？",
    "帮我查一下明天北京的天气。",
    "我还想找一个{area}的博物馆。",
    "帮我订一张{d}去杭州的机票。",
    "我的快递怎么还没到？",
    "有没有{area}的停车场？",
]
_SLOTS = {
    "en": {
        "adj": ["cheap", "moderately priced", "expensive", "quiet", "family-friendly"],
        "kind": ["Italian", "Chinese", "Indian", "Thai", "French", "Korean", "vegetarian"],
        "area": ["centre", "north", "south", "east", "west", "city centre"],
        "d": ["Monday", "Tuesday", "Friday", "Saturday", "Sunday"],
        "t": ["12:00", "17:45", "18:30", "19:15", "20:00", "9:30"],
        "n": ["2", "3", "4", "5", "6"],
        "k": ["2", "3", "4"],
    },
    "zh": {
        "adj": ["便宜", "实惠", "高档", "安静"],
        "kind": ["川菜", "粤菜", "火锅", "日料", "烤鸭", "素食"],
        "area": ["市中心", "朝阳区", "西湖边", "火车站", "机场"],
        "d": ["周五", "周六", "明天", "后天"],
        "t": ["中午12点", "晚上6点", "晚上7点半"],
        "n": ["2", "3", "4", "6"],
        "k": ["1", "2", "3"],
    },
}


class TaskDialogGenerator:
    """``generate(n)``: n records, about half ``unchanged``; identical for the same seed."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(f"taskdialog-{seed}")

    def _fill(self, template: str, lang: str, slots: dict[str, str]) -> str:
        for key, values in _SLOTS[lang].items():
            if "{" + key + "}" in template and key not in slots:
                slots[key] = self.rng.choice(values)
        for key, value in slots.items():
            template = template.replace("{" + key + "}", value)
        return template[:1].upper() + template[1:]

    def _one(self, lang: str) -> tuple[list[tuple[str, str]], str, str]:
        domains, standalone = (_EN, _EN_STANDALONE) if lang == "en" else (_ZH, _ZH_STANDALONE)
        domain = domains[self.rng.choice(sorted(domains))]
        name, other = self.rng.sample(domain["names"], 2)
        slots: dict[str, str] = {"E": name, "e": name, "e2": other}
        turns = [
            ("user", self._fill(self.rng.choice(domain["ask"]), lang, slots)),
            ("assistant", self._fill(self.rng.choice(domain["offer"]), lang, slots)),
        ]
        if self.rng.random() < 0.4:  # a longer dialogue: one more resolved exchange first
            full, _ = self.rng.choice(domain["refer"])
            turns += [
                ("user", self._fill(full, lang, slots)),
                ("assistant", "Sure, done." if lang == "en" else "好的，已经帮你处理了。"),
            ]
        if self.rng.random() < 0.5:
            query = self._fill(self.rng.choice(standalone), lang, dict(slots))
            return [*turns, ("user", query)], query, "unchanged"
        full, short = self.rng.choice(domain["refer"])
        filled = dict(slots)
        rewrite = self._fill(full, lang, filled)
        query = self._fill(short, lang, filled)
        if rewrite == query:
            return [*turns, ("user", query)], query, "unchanged"
        return [*turns, ("user", query)], rewrite, "rewritten"

    def generate(self, n: int, langs: tuple[str, ...] = ("en", "zh")) -> list[RewriteRecord]:
        records = []
        for i in range(n):
            lang = langs[i % len(langs)]
            turns, rewrite, label = self._one(lang)
            records.append(record_from_turns(f"task-{lang}-{i:05d}", lang, turns, rewrite, label, "synthetic:task"))
        return records


# -- a phone assistant (calls, messages, music, news, reminders, weather) and slot changes in a booking ------------
# Each scenario: (user request, assistant reply) and follow-ups as (query, standalone form); "{x2}" is the entity the
# follow-up points at when the reply offered two. Standalone requests of the same domains are the `unchanged` half.
_ASSISTANT_SCENARIOS = [
    (
        "Call {first}.",
        "Would that be {first} {last} or {first} {last2}?",
        [
            ("The second one.", "Call {first} {last2}."),
            ("The first one.", "Call {first} {last}."),
            ("{last2}.", "Call {first} {last2}."),
        ],
    ),
    (
        "Send a message to {first}.",
        "Do you mean {first} {last} or {first} {last2}?",
        [
            ("The second one.", "Send a message to {first} {last2}."),
            ("{first} {last}, please.", "Send a message to {first} {last}, please."),
        ],
    ),
    (
        "Text {contact}.",
        "What would you like to say to {contact}?",
        [
            ("Tell {pron} I'm running late.", "Tell {contact} I'm running late."),
            (
                "Ask {pron} if {subj} needs anything from the store.",
                "Ask {contact} if {subj} needs anything from the store.",
            ),
        ],
    ),
    (
        "Call {first2}.",
        "Calling {contact} now.",
        [
            ("Actually, text {pron} instead.", "Actually, text {contact} instead."),
            ("What's {poss} number?", "What's {contact}'s number?"),
        ],
    ),
    (
        "Play {song} by {artist}.",
        "Now playing {song} by {artist}.",
        [
            ("Add it to my playlist!", "Add {song} by {artist} to my playlist!"),
            ("Play it again.", "Play {song} by {artist} again."),
            ("Play more songs by this artist.", "Play more songs by {artist}."),
        ],
    ),
    (
        "Play some {genre} music.",
        "Here's {song} by {artist}.",
        [("Who sings this song?", "Who sings {song}?"), ("Save this song.", "Save {song} by {artist}.")],
    ),
    (
        "What's the weather like in {city} today?",
        "It's {cond} in {city} today, with a high of {temp} degrees.",
        [
            ("What about tomorrow?", "What's the weather like in {city} tomorrow?"),
            ("And in {city2}?", "What's the weather like in {city2} today?"),
            ("Will it rain there on {day}?", "Will it rain in {city} on {day}?"),
        ],
    ),
    (
        "Remind me to {task} at {time}.",
        "OK, I set a reminder to {task} at {time}.",
        [
            ("Change it to {time2}.", "Change the reminder to {task} to {time2}."),
            ("Delete that reminder.", "Delete the reminder to {task}."),
            ("Move it to {day}.", "Move the reminder to {task} to {day}."),
        ],
    ),
    (
        "What's the latest news about {topic}?",
        "Here are the top stories about {topic}: {head} and {head2}.",
        [
            ("Read me the second one.", "Read me the story {head2}."),
            ("Tell me more about the first story.", "Tell me more about the story {head}."),
            ("Any updates on that from {source}?", "Any updates on {topic} from {source}?"),
        ],
    ),
    (
        "I want a {price} restaurant in the {area} part of town serving {food} food.",
        "There are no {price} {food} restaurants in the {area}. Would you like another type of food?",
        [
            ("How about {food2}?", "How about a {price} {food2} restaurant in the {area} part of town?"),
            ("What about the {area2}?", "What about a {price} {food} restaurant in the {area2} part of town?"),
        ],
    ),
    (
        "Find me a restaurant serving {food} food in the {area}.",
        "{venue} serves {food} food in the {area} and is {price}.",
        [
            ("What is their phone number?", "What is the phone number of {venue}?"),
            ("Is there anything cheaper?", "Is there a {food} restaurant in the {area} cheaper than {venue}?"),
            ("Book it for {n} people.", "Book {venue} for {n} people."),
        ],
    ),
]
_ASSISTANT_STANDALONE = [
    "Turn up the volume.",
    "Play some {genre} music.",
    "What's the weather in {city2} this weekend?",
    "Set a reminder to {task} tomorrow at {time}.",
    "Read me today's headlines.",
    "Call {first2}.",
    "Text {first} {last} that I'll be home soon.",
    "Pause the music.",
    "What time is it in {city2}?",
    "Thanks, that's all.",
    "Cancel all my reminders for today.",
    "I'd like a {price} {food2} restaurant in the {area2}.",
]
#: Slot pools. Of the entity pools (HELD_OUT_KEYS) even positions feed the train split and odd ones the held-out
#: split, so a dev or test conversation names contacts, songs, cities, tasks and venues that training never showed.
_ASSISTANT_SLOTS = {
    "first": ["Tim", "Sarah", "Mike", "Anna", "David", "Emma", "Chris", "Laura", "James", "Nina"],
    "last": ["Green", "Jackson", "Miller", "Lopez", "Walker", "Nguyen", "Hughes", "Patel", "Foster", "Kim"],
    "contact": [
        ("Mom", "her"),
        ("Dad", "him"),
        ("Jenny", "her"),
        ("Paul", "him"),
        ("Grandma", "her"),
        ("Kevin", "him"),
    ],
    "song": [
        ("Hello", "Adele"),
        ("Yesterday", "The Beatles"),
        ("Halo", "Beyonce"),
        ("Jolene", "Dolly Parton"),
        ("Clocks", "Coldplay"),
        ("Believer", "Imagine Dragons"),
        ("Respect", "Aretha Franklin"),
        ("Vienna", "Billy Joel"),
    ],
    "genre": ["jazz", "rock", "classical", "country", "pop", "hip hop"],
    "city": ["Boston", "Seattle", "Denver", "Chicago", "Austin", "Miami", "Portland", "Atlanta"],
    "cond": ["sunny", "cloudy", "rainy", "windy", "snowy"],
    "temp": ["41", "58", "65", "72", "80", "88"],
    "day": ["Monday", "Tuesday", "Wednesday", "Friday", "Saturday", "Sunday"],
    "task": [
        "buy milk",
        "call the dentist",
        "pick up the kids",
        "water the plants",
        "pay the rent",
        "take my medicine",
        "book the flights",
        "send the report",
    ],
    "time": ["7am", "9:30am", "noon", "3pm", "5pm", "6:45pm", "8pm", "10pm"],
    "topic": [
        ("the election", "Polls close in three states", "Turnout hits a record"),
        ("the stock market", "Markets rally after rate cut", "Tech shares slide"),
        ("the World Cup", "Underdogs reach the final", "Star striker out injured"),
        ("climate change", "Record heat in Europe", "New pledges on emissions"),
        ("the Mars mission", "Rover finds ancient lake bed", "Launch delayed to spring"),
        ("the housing market", "Prices fall for a third month", "Mortgage rates ease"),
    ],
    "source": ["the BBC", "CNN", "Reuters", "NPR"],
    "price": ["cheap", "moderately priced", "expensive"],
    "area": ["north", "south", "east", "west", "centre"],
    "food": ["Indian", "Italian", "Chinese", "Thai", "French", "Spanish", "Korean", "Turkish"],
    "venue": [
        "the Golden Curry",
        "Pizza Hut Fen Ditton",
        "Royal Spice",
        "the Nirala",
        "La Margherita",
        "Yippee Noodle Bar",
    ],
    "n": ["2", "3", "4", "5", "6", "8"],
}


_HELD_OUT_KEYS = ("first", "last", "contact", "song", "city", "task", "topic", "venue")


def split_pools(pools: dict[str, list], split: str, keys: tuple[str, ...] | None = None) -> dict[str, list]:
    """Entity pools for a split: even positions train, odd positions are held out (dev/test), so held-out
    conversations name entities training never saw. Pools not in ``keys`` (default: all) are shared."""
    offset = 0 if split == "train" else 1
    return {k: v[offset::2] if keys is None or k in keys else v for k, v in pools.items()}


_TUPLE_KEYS = ("contact", "song", "topic")


class AssistantDialogGenerator:
    """``generate(n)``: English phone-assistant and restaurant-search dialogues, about half ``unchanged``.

    The follow-ups the task generator lacks: picking one of two offered contacts ("The second one."), "it" for the
    song playing or the reminder just set, "her" for a contact, a weather or news follow-up, and a booking slot
    changed after "no such restaurant" ("How about Italian?"). ``split="held"`` draws entities training never saw.
    """

    def __init__(self, seed: int = 0, split: str = "train") -> None:
        self.split = split
        self.rng = random.Random(f"assistantdialog-{seed}-{split}")
        self.slots = split_pools(_ASSISTANT_SLOTS, split, _HELD_OUT_KEYS)

    def _slots(self) -> dict[str, str]:
        pick = {key: self.rng.sample(values, 2) for key, values in self.slots.items()}
        (contact, pron), (song, artist), (topic, head, head2) = pick["contact"][0], pick["song"][0], pick["topic"][0]
        slots = {key: values[0] for key, values in pick.items() if key not in _TUPLE_KEYS}
        slots |= {f"{key}2": values[1] for key, values in pick.items() if key not in _TUPLE_KEYS}
        slots |= {"contact": contact, "pron": pron, "subj": "she" if pron == "her" else "he"}
        slots |= {"poss": "her" if pron == "her" else "his", "song": song, "artist": artist}
        return slots | {"topic": topic, "head": head, "head2": head2}

    def _one(self) -> tuple[list[tuple[str, str]], str, str]:
        slots = self._slots()
        ask, reply, follow_ups = self.rng.choice(_ASSISTANT_SCENARIOS)
        turns = [("user", ask.format(**slots)), ("assistant", reply.format(**slots))]
        if self.rng.random() < 0.5:
            query = self.rng.choice(_ASSISTANT_STANDALONE).format(**slots)
            return [*turns, ("user", query)], query, "unchanged"
        query, standalone = self.rng.choice(follow_ups)
        return [*turns, ("user", query.format(**slots))], standalone.format(**slots), "rewritten"

    def generate(self, n: int) -> list[RewriteRecord]:
        records = []
        for i in range(n):
            turns, rewrite, label = self._one()
            records.append(
                record_from_turns(f"assistant-{self.split}-{i:05d}", "en", turns, rewrite, label, "synthetic:assistant")
            )
        return records
