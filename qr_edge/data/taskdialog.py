"""A seeded generator of task-oriented dialogues (bookings, venues, travel, support), en and zh.

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
