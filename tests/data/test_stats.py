from aurora_rl.data.stats import compute_stats, format_stats


def test_stats_of_real_layout_without_facts_use_uid_classes(refavs_root):
    stats = compute_stats(refavs_root)
    assert stats["splits"]["train"] == {"videos": 1, "rows": 2}
    assert stats["splits"]["test_u"] == {"videos": 0, "rows": 0}
    assert stats["classes"]["train"] == {"piano": 1, "car": 1}
    assert stats["classes"]["test_n"] == {"(none)": 1}
    assert stats["kinds"]["val"] == {"unknown": 1} and stats["kinds"]["test_n"] == {"null": 1}
    text = format_stats(stats)
    assert "test_u" not in text  # empty splits are left out of the tables
    assert "helicopter" in text and "templates" not in text
