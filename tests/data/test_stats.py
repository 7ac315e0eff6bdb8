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


def test_stats_count_the_skipped_rows_and_the_repeated_uids(official_root):
    stats = compute_stats(official_root)
    assert stats["skipped"] == {"TODO": 1} and stats["repeated_uids"] == 1
    assert stats["splits"]["test_s"] == {"videos": 1, "rows": 2}  # the repeated uid's two rows
    text = format_stats(stats)
    assert "1 row of split 'TODO' skipped" in text and "1 uid(s) on more than one row" in text
