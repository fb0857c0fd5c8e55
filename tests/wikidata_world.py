"""A small Wikidata-shaped world for add-country tests (loaded into tests/wikidata_endpoint.py).

Serbia with actors, athletes and musicians; occupations in subclass chains (film/TV actor
⊂ actor ⊂ performer) and a subclass cycle (performer ⊂ artist ⊂ performer); namesakes across
occupations (an actor and a footballer both "Dragan Jovanović") and within one (two actors
"Milan Petrović"); people with no English label (mul only, sr only, sr-el only, German
only, none at all); a decoy country (a film "Serbia") and a decoy occupation (the "actor"
of the actor model, with more sitelinks and even used as someone's P106); two countries
sharing the label "Congo".
"""

from __future__ import annotations

from wikidata_endpoint import Entity, country, human, occupation

OCCUPATION, PROFESSION = "Q12737077", "Q28640"
SERBIA, CROATIA, CONGO_BRAZZAVILLE, CONGO_KINSHASA = "Q403", "Q224", "Q971", "Q974"
ACTOR, FILM_ACTOR, TV_ACTOR = "Q33999", "Q10800557", "Q10798782"
PERFORMER, ARTIST = "Q713200", "Q483501"
ATHLETE, TENNIS, FOOTBALLER = "Q2066131", "Q10833314", "Q937857"
MUSICIAN, SINGER = "Q639669", "Q177220"
ACTOR_MODEL = "Q9000001"  # decoy: a concept labelled "actor"
NO_LABEL_ACTOR = "Q7000010"
JOVANOVIC_ACTOR, JOVANOVIC_FOOTBALLER = "Q7000020", "Q7000021"
PETROVIC_1, PETROVIC_2 = "Q7000030", "Q7000031"


def languages() -> list[Entity]:
    return [
        Entity("Q9299", {"en": "Serbian"}, strings={"P424": "sr"}),
        Entity("Q6654", {"en": "Croatian"}, strings={"P424": "hr"}),
        Entity("Q150", {"en": "French"}, strings={"P424": "fr"}),
    ]


def countries() -> list[Entity]:
    return [
        country(SERBIA, "Serbia", ["Republic of Serbia"], 300, ("Q9299",)),
        country(CROATIA, "Croatia", ["Republic of Croatia"], 280, ("Q6654",)),
        country(
            CONGO_BRAZZAVILLE,
            "Republic of the Congo",
            ["Congo", "Congo-Brazzaville"],
            250,
            ("Q150",),
        ),
        country(
            CONGO_KINSHASA,
            "Democratic Republic of the Congo",
            ["Congo", "DR Congo"],
            300,
            ("Q150",),
        ),
        # decoy: a film called "Serbia", with more sitelinks than the country
        Entity("Q9000003", {"en": "Serbia"}, sitelinks=999, claims={"P31": ("Q11424",)}),
    ]


def occupations() -> list[Entity]:
    return [
        Entity(OCCUPATION, {"en": "occupation"}, sitelinks=100),
        Entity(PROFESSION, {"en": "profession"}, sitelinks=90, claims={"P279": (OCCUPATION,)}),
        occupation(PERFORMER, "performer", 60, (OCCUPATION,), (ARTIST,)),
        occupation(ARTIST, "artist", 120, (PROFESSION,), (PERFORMER,)),  # a cycle
        occupation(ACTOR, "actor", 150, (PROFESSION,), (PERFORMER,), ["actress"]),
        occupation(FILM_ACTOR, "film actor", 40, (), (ACTOR,)),
        occupation(TV_ACTOR, "television actor", 30, (), (ACTOR,)),
        occupation(ATHLETE, "athlete", 120, (PROFESSION,), (), ["sportsperson"]),
        occupation(TENNIS, "tennis player", 90, (), (ATHLETE,)),
        occupation(FOOTBALLER, "association football player", 95, (), (ATHLETE,), ["footballer"]),
        occupation(MUSICIAN, "musician", 140, (PROFESSION,)),
        occupation(SINGER, "singer", 100, (OCCUPATION,), (MUSICIAN,)),
        # decoy: the actor model's "actor" (more sitelinks; not an occupation)
        occupation(ACTOR_MODEL, "actor", 500, ("Q9000002",)),
        Entity("Q9000002", {"en": "mathematical model"}, sitelinks=50),
    ]


def people() -> list[Entity]:
    sr = SERBIA
    return [
        human(
            "Q5812",
            {"en": "Novak Djokovic", "sr": "Новак Ђоковић"},
            sr,
            (TENNIS,),
            160,
            "Novak Djokovic 2023.jpg",
            {"en": ["Novak Đoković", "Nole"]},
        ),
        human(
            "Q466104",
            {"en": "Ana Ivanovic", "sr": "Ана Ивановић"},
            sr,
            (TENNIS,),
            80,
            aliases={"en": ["Ana Ivanović"]},
        ),
        human("Q7000005", {"en": "Milica Mandić", "sr": "Милица Мандић"}, sr, (ATHLETE,), 35),
        human("Q7000004", {"en": "Goran Ivanišević"}, CROATIA, (TENNIS,), 60),
        human(
            "Q1336513",
            {"en": "Ljubiša Samardžić", "sr": "Љубиша Самарџић"},
            sr,
            (FILM_ACTOR,),
            25,
            "Ljubisa Samardzic.jpg",
        ),
        human("Q7000001", {"en": "Miloš Biković", "sr": "Милош Биковић"}, sr, (ACTOR,), 30),
        human("Q7000002", {"mul": "Dragan Nikolić", "sr": "Драган Николић"}, sr, (ACTOR,), 20),
        human(NO_LABEL_ACTOR, {}, sr, (ACTOR,), 28),  # no label in any language
        human("Q7000012", {"sr": "Зоран Радмиловић"}, sr, (TV_ACTOR,), 22),
        human("Q7000013", {"sr-el": "Velimir Živojinović"}, sr, (FILM_ACTOR,), 18),
        human("Q7000014", {"de": "Mira Stupica"}, sr, (ACTOR,), 15),
        human(
            JOVANOVIC_ACTOR,
            {"en": "Dragan Jovanović", "sr": "Драган Јовановић"},
            sr,
            (TV_ACTOR,),
            12,
            "Dragan Jovanovic actor.jpg",
        ),
        human(
            JOVANOVIC_FOOTBALLER,
            {"en": "Dragan Jovanović", "sr": "Драган Јовановић"},
            sr,
            (FOOTBALLER,),
            40,
            "Dragan Jovanovic footballer.jpg",
        ),
        human(PETROVIC_1, {"en": "Milan Petrović"}, sr, (FILM_ACTOR,), 8, "Milan Petrovic 1.jpg"),
        human(PETROVIC_2, {"en": "Milan Petrović"}, sr, (TV_ACTOR,), 7, "Milan Petrovic 2.jpg"),
        human("Q7000040", {"en": "Jelena Umetnik"}, sr, (ARTIST,), 50),
        human("Q7000041", {"en": "Branka Izvođač"}, sr, (PERFORMER,), 45),
        human("Q7000003", {"en": "Đorđe Balašević", "sr": "Ђорђе Балашевић"}, sr, (SINGER,), 40),
        human("Q7000042", {"en": "Bora Đorđević", "sr": "Бора Ђорђевић"}, sr, (MUSICIAN,), 38),
        human("Q7000099", {"en": "Data Error"}, sr, (ACTOR_MODEL,), 1),  # a bad P106
        human("Q7000050", {"en": "Papa Wemba"}, CONGO_KINSHASA, (SINGER,), 60),
        human("Q7000051", {"en": "Roga Roga"}, CONGO_BRAZZAVILLE, (SINGER,), 20),
    ]


def serbia_world() -> list[Entity]:
    return languages() + countries() + occupations() + people()
