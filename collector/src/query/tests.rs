use earshot_common::time::days_from_civil;

use super::*;

/// UTC ms of y-m-d hh:mm.
fn at(y: i64, m: u32, d: u32, hh: i64, mm: i64) -> i64 {
    days_from_civil(y, m, d) * DAY_MS + hh * HOUR_MS + mm * MINUTE_MS
}

fn sketch(ids: &[u64]) -> UniqueSketch {
    let mut s = UniqueSketch::new();
    for &i in ids {
        s.insert(i);
    }
    s
}

fn quarter(start_ms: i64, sessions: u64, carried_in: u64) -> CounterRow {
    CounterRow {
        start_ms,
        stream: "/a".into(),
        sessions,
        carried_in,
        ..Default::default()
    }
}

#[test]
fn ranges_align_outwards_to_quarters() {
    let r = TimeRange::new(at(2026, 1, 1, 10, 7), at(2026, 1, 1, 10, 52), 400).unwrap();
    assert_eq!(
        r,
        TimeRange {
            from_ms: at(2026, 1, 1, 10, 0),
            to_ms: at(2026, 1, 1, 11, 0)
        }
    );
    assert_eq!(r.quarters(), 4);
    assert!(matches!(
        TimeRange::new(5, 5, 400),
        Err(QueryError::EmptyRange { .. })
    ));
    assert!(matches!(
        TimeRange::new(at(2026, 1, 1, 0, 0), at(2026, 1, 3, 0, 1), 2),
        Err(QueryError::RangeTooLong { max_days: 2, .. })
    ));
    assert!(TimeRange::new(at(2026, 1, 1, 0, 0), at(2026, 1, 3, 0, 0), 2).is_ok());
}

#[test]
fn epochs_are_utc_months() {
    let r = TimeRange::new(at(2026, 1, 1, 0, 0), at(2026, 2, 1, 0, 0), 400).unwrap();
    assert!(r.within_one_epoch());
    let r = TimeRange::new(at(2026, 1, 31, 23, 0), at(2026, 2, 1, 0, 15), 400).unwrap();
    assert!(!r.within_one_epoch());
}

#[test]
fn instants_parse_with_any_offset() {
    assert_eq!(
        parse_instant("from", Some("2026-01-01T05:30:00+05:30")).unwrap(),
        at(2026, 1, 1, 0, 0)
    );
    assert_eq!(
        parse_instant("from", Some("2026-01-01T00:00:00Z")).unwrap(),
        at(2026, 1, 1, 0, 0)
    );
    assert_eq!(
        parse_instant("to", None),
        Err(QueryError::MissingTime { param: "to" })
    );
    assert!(matches!(
        parse_instant("from", Some("yesterday")),
        Err(QueryError::BadTime { param: "from", .. })
    ));
    assert!(
        parse_instant("from", Some("2026-01-01T00:00:00")).is_err(),
        "an offset is required"
    );
    assert_eq!(rfc3339(at(2026, 1, 1, 0, 15)), "2026-01-01T00:15:00Z");
}

#[test]
fn time_zones_parse() {
    let tz = parse_time_zone("+05:30").unwrap();
    assert_eq!(offset_ms(0, &tz), 5 * HOUR_MS + 30 * MINUTE_MS);
    assert_eq!(
        offset_ms(0, &parse_time_zone("-0345").unwrap()),
        -(3 * HOUR_MS + 45 * MINUTE_MS)
    );
    assert_eq!(offset_ms(0, &parse_time_zone("Z").unwrap()), 0);
    assert_eq!(
        offset_ms(0, &parse_time_zone("Asia/Kolkata").unwrap()),
        5 * HOUR_MS + 30 * MINUTE_MS
    );
    for bad in ["Mars/Olympus", "+25:00", "+05:3x", "", "+"] {
        assert!(parse_time_zone(bad).is_err(), "{bad}");
    }
}

#[test]
fn day_buckets_clip_to_the_range() {
    let r = TimeRange::new(at(2026, 1, 1, 6, 0), at(2026, 1, 3, 12, 0), 400).unwrap();
    let b = buckets(r, Granularity::Day, &TimeZone::UTC).unwrap();
    assert_eq!(
        b,
        vec![
            Bucket {
                from_ms: at(2026, 1, 1, 6, 0),
                to_ms: at(2026, 1, 2, 0, 0)
            },
            Bucket {
                from_ms: at(2026, 1, 2, 0, 0),
                to_ms: at(2026, 1, 3, 0, 0)
            },
            Bucket {
                from_ms: at(2026, 1, 3, 0, 0),
                to_ms: at(2026, 1, 3, 12, 0)
            },
        ]
    );
}

#[test]
fn weeks_start_on_monday_and_months_follow_the_zone() {
    // 2026-01-01 is a Thursday; the next Monday is the 5th.
    let r = TimeRange::new(at(2026, 1, 1, 0, 0), at(2026, 1, 15, 0, 0), 400).unwrap();
    let b = buckets(r, Granularity::Week, &TimeZone::UTC).unwrap();
    let starts: Vec<i64> = b.iter().map(|b| b.from_ms).collect();
    assert_eq!(
        starts,
        vec![
            at(2026, 1, 1, 0, 0),
            at(2026, 1, 5, 0, 0),
            at(2026, 1, 12, 0, 0)
        ]
    );
    assert_eq!(b[2].to_ms, at(2026, 1, 15, 0, 0));

    let tz = parse_time_zone("+05:30").unwrap();
    let r = TimeRange::new(at(2026, 1, 15, 0, 0), at(2026, 3, 10, 0, 0), 400).unwrap();
    let b = buckets(r, Granularity::Month, &tz).unwrap();
    // Local midnight of Feb 1st and Mar 1st at +05:30 is 18:30 UTC the day before.
    let starts: Vec<i64> = b.iter().map(|b| b.from_ms).collect();
    assert_eq!(
        starts,
        vec![
            at(2026, 1, 15, 0, 0),
            at(2026, 1, 31, 18, 30),
            at(2026, 2, 28, 18, 30)
        ]
    );
}

#[test]
fn hour_buckets_follow_half_hour_zones_and_dst() {
    let tz = parse_time_zone("+05:30").unwrap();
    let r = TimeRange::new(at(2026, 1, 1, 0, 0), at(2026, 1, 1, 2, 0), 400).unwrap();
    let b = buckets(r, Granularity::Hour, &tz).unwrap();
    let starts: Vec<i64> = b.iter().map(|b| b.from_ms).collect();
    assert_eq!(
        starts,
        vec![
            at(2026, 1, 1, 0, 0),
            at(2026, 1, 1, 0, 30),
            at(2026, 1, 1, 1, 30)
        ]
    );

    // Europe/Paris leaves summer time at 01:00 UTC on 2026-10-25: local 02:00–03:00 twice.
    let paris = parse_time_zone("Europe/Paris").unwrap();
    let r = TimeRange::new(at(2026, 10, 24, 22, 0), at(2026, 10, 25, 23, 0), 400).unwrap();
    assert_eq!(buckets(r, Granularity::Hour, &paris).unwrap().len(), 25);
    assert_eq!(
        buckets(r, Granularity::Day, &paris).unwrap().len(),
        1,
        "a 25-hour local day"
    );
}

#[test]
fn minute_granularity_is_limited_to_seven_days() {
    let ok = TimeRange::new(at(2026, 1, 1, 0, 0), at(2026, 1, 8, 0, 0), 400).unwrap();
    assert_eq!(
        buckets(ok, Granularity::Minute, &TimeZone::UTC)
            .unwrap()
            .len(),
        MAX_BUCKETS
    );
    let long = TimeRange::new(at(2026, 1, 1, 0, 0), at(2026, 1, 8, 0, 15), 400).unwrap();
    assert!(matches!(
        buckets(long, Granularity::Minute, &TimeZone::UTC),
        Err(QueryError::TooManyBuckets { .. })
    ));
    assert!(Granularity::parse("fortnight").is_err());
}

#[test]
fn segments_read_whole_days_and_ragged_edges() {
    let b = [Bucket {
        from_ms: at(2026, 1, 1, 6, 0),
        to_ms: at(2026, 1, 4, 12, 0),
    }];
    assert_eq!(
        segments(&b),
        vec![
            Segment::Quarters {
                from_ms: at(2026, 1, 1, 6, 0),
                to_ms: at(2026, 1, 2, 0, 0)
            },
            Segment::Days {
                from_ms: at(2026, 1, 2, 0, 0),
                to_ms: at(2026, 1, 4, 0, 0)
            },
            Segment::Quarters {
                from_ms: at(2026, 1, 4, 0, 0),
                to_ms: at(2026, 1, 4, 12, 0)
            },
        ]
    );
    // Daily UTC buckets coalesce into one day read; +05:30 days contain no whole UTC day.
    let r = TimeRange::new(at(2026, 1, 1, 0, 0), at(2026, 1, 11, 0, 0), 400).unwrap();
    let days = buckets(r, Granularity::Day, &TimeZone::UTC).unwrap();
    assert_eq!(
        segments(&days),
        vec![Segment::Days {
            from_ms: r.from_ms,
            to_ms: r.to_ms
        }]
    );
    let ist = buckets(r, Granularity::Day, &parse_time_zone("+05:30").unwrap()).unwrap();
    assert_eq!(
        segments(&ist),
        vec![Segment::Quarters {
            from_ms: r.from_ms,
            to_ms: r.to_ms
        }]
    );
}

#[test]
fn active_sessions_add_the_carried_in_of_the_first_quarter_only() {
    let r = TimeRange::new(at(2026, 1, 1, 10, 0), at(2026, 1, 1, 11, 0), 400).unwrap();
    let mut rows = vec![
        quarter(at(2026, 1, 1, 10, 0), 2, 3),
        quarter(at(2026, 1, 1, 10, 15), 1, 5),
        quarter(at(2026, 1, 1, 10, 45), 4, 1),
    ];
    rows[0].listening_ms = 1_800_000;
    rows[1].listening_ms = 1_800_000;
    rows[0].aqh_listeners = 4;
    rows[2].aqh_listeners = 2;
    rows[0].uniques = Some(sketch(&[1, 2, 3]));
    rows[1].uniques = Some(sketch(&[3, 4]));
    let b = [Bucket {
        from_ms: r.from_ms,
        to_ms: r.to_ms,
    }];
    let peaks = vec![
        PeakRow {
            start_ms: at(2026, 1, 1, 10, 3),
            at_ms: at(2026, 1, 1, 10, 3),
            listeners: 7,
            stream: None,
        },
        PeakRow {
            start_ms: at(2026, 1, 1, 10, 1),
            at_ms: at(2026, 1, 1, 10, 1),
            listeners: 7,
            stream: None,
        },
        PeakRow {
            start_ms: at(2026, 1, 1, 10, 2),
            at_ms: at(2026, 1, 1, 10, 2),
            listeners: 5,
            stream: None,
        },
    ];
    let m = accumulate(&b, &rows, &peaks)[0].metrics(r);
    assert_eq!(m.sessions, 7);
    assert_eq!(m.active_sessions, 7 + 3);
    assert_eq!(m.listening_seconds, 3600.0);
    assert_eq!(m.tlh, 1.0);
    assert_eq!(m.unique_listeners, 4);
    assert_eq!(m.tsl_seconds, 900.0);
    assert_eq!(m.average_listeners, 1.0);
    assert_eq!(m.aqh, 6.0 / 4.0, "quarters without data count as zero");
    assert_eq!(m.peak_concurrent, 7);
    assert_eq!(
        m.peak_at.as_deref(),
        Some("2026-01-01T10:01:00Z"),
        "first minute of the peak"
    );

    // Starting the range at 10:15 makes that quarter's carried_in count instead.
    let r2 = TimeRange::new(at(2026, 1, 1, 10, 15), at(2026, 1, 1, 11, 0), 400).unwrap();
    let b2 = [Bucket {
        from_ms: r2.from_ms,
        to_ms: r2.to_ms,
    }];
    let m2 = accumulate(&b2, &rows, &[])[0].metrics(r2);
    assert_eq!((m2.sessions, m2.active_sessions), (5, 5 + 5));
    assert_eq!((m2.peak_concurrent, m2.peak_at), (0, None));
    assert_eq!(m2.tsl_seconds, 900.0);
}

#[test]
fn by_hour_in_a_half_hour_zone() {
    let tz = parse_time_zone("+05:30").unwrap();
    // Two days from 00:00Z (05:30 local). Local hour 5 gets 00:00Z and 00:15Z (05:30, 05:45);
    // local hour 6 starts at 00:30Z.
    let r = TimeRange::new(at(2026, 1, 1, 0, 0), at(2026, 1, 3, 0, 0), 400).unwrap();
    let mut rows = vec![
        quarter(at(2026, 1, 1, 0, 0), 1, 10), // hour 5, first quarter of the range: carried counts
        quarter(at(2026, 1, 1, 0, 15), 2, 20), // hour 5, mid-hour: carried does not count
        quarter(at(2026, 1, 1, 0, 30), 3, 30), // hour 6 starts: carried counts
        quarter(at(2026, 1, 2, 0, 0), 4, 40), // hour 5 of day 2, mid-hour (05:30 local)
        quarter(at(2026, 1, 1, 23, 30), 5, 50), // local 05:00 of Jan 2nd: hour 5 starts
    ];
    rows.sort_by_key(|r| r.start_ms);
    for (i, r) in rows.iter_mut().enumerate() {
        r.listening_ms = 1000 * (i as u64 + 1);
        r.completed = 1;
        r.uniques = Some(sketch(&[i as u64 % 2]));
    }
    let h = by_hour(r, &rows, &tz);
    assert_eq!(h.len(), 24);
    assert_eq!(h[5].sessions_started, 1 + 2 + 5 + 4);
    assert_eq!(h[5].active_sessions, (1 + 10) + 2 + (5 + 50) + 4);
    assert_eq!(h[5].sessions_completed, 4);
    assert_eq!(h[5].unique_listeners, 2);
    assert_eq!(h[6].sessions_started, 3);
    assert_eq!(h[6].active_sessions, 3 + 30);
    assert_eq!(h[6].listening_seconds, 3.0);
    assert_eq!(h[0].active_sessions, 0);
}

#[test]
fn length_rows_follow_the_edges() {
    let mut l = [0u64; LENGTH_BUCKETS];
    l[0] = 4;
    l[12] = 1;
    let rows = length_rows(&l);
    assert_eq!(
        rows[0],
        LengthRow {
            min_seconds: 60,
            max_seconds: Some(300),
            sessions: 4
        }
    );
    assert_eq!(
        rows[12],
        LengthRow {
            min_seconds: 64_800,
            max_seconds: None,
            sessions: 1
        }
    );
}

#[test]
fn breakdowns_sort_by_sessions_then_value() {
    let counts = vec![
        DimCountRow {
            value: "VLC".into(),
            sessions: 2,
            listening_ms: 1000,
        },
        DimCountRow {
            value: "Chrome".into(),
            sessions: 5,
            listening_ms: 1000,
        },
        DimCountRow {
            value: "VLC".into(),
            sessions: 3,
            listening_ms: 500,
        },
        DimCountRow {
            value: "Alexa".into(),
            sessions: 0,
            listening_ms: 0,
        },
    ];
    let rows = dimension_breakdown(
        &counts,
        vec![
            ("VLC".into(), sketch(&[1, 2])),
            ("VLC".into(), sketch(&[2, 3])),
        ],
    );
    let order: Vec<&str> = rows.iter().map(|r| r.value.as_str()).collect();
    assert_eq!(order, vec!["Chrome", "VLC", "Alexa"]);
    assert_eq!(rows[1].sessions, 5);
    assert_eq!(rows[1].listening_seconds, 1.5);
    assert_eq!(rows[1].unique_listeners, 3);
    assert_eq!(rows[0].share, 0.5);
    assert!(serde_json::to_value(&rows[0]).unwrap().get("aqh").is_none());
}
