//! A replica's [`Mirror`] fed from a live writer's segment files, as the replication endpoints
//! ship them (sealed segments whole, the active one up to its published extent):
//!
//! - followed while the writer appends and rolls, the mirror holds the writer's log byte for
//!   byte, a reader of its directory sees every shipped event (and, with the mirror's lock held,
//!   nothing past what it published), `verify` passes, and a reopened mirror continues;
//! - a sealed segment the writer's scavenger rewrote after the mirror shipped part of it does
//!   not extend the mirror's records: staging it on top of them is refused (a rewrite to a
//!   smaller file is staged whole at once), and staging it whole is taken (husks and all), the
//!   chain intact;
//! - a sealed segment whose footer was changed is refused, and the mirror is unchanged.

use std::path::Path;

use log_engine::{
    DeleteMode, ExpectedVersion, Log, Mirror, NewEvent, Options, Position, ScavengeOptions, SegmentFile, SegmentId,
    MIRROR_HEADER_BYTES,
};

fn options() -> Options {
    Options { segment_size: log_engine::SEGMENT_SIZE_MIN, ..Options::default() }
}

fn event(stream: &str, n: usize) -> NewEvent {
    NewEvent::json("Step", &serde_json::json!({"stream": stream, "n": n, "pad": "z".repeat(700)}))
}

fn id_of(file: &SegmentFile) -> SegmentId {
    SegmentId(file.path.file_stem().unwrap().to_str().unwrap().parse().unwrap())
}

fn bytes_of(file: &SegmentFile, from: u64, to: u64) -> Vec<u8> {
    std::fs::read(&file.path).unwrap()[from as usize..to as usize].to_vec()
}

/// Ships what `mirror` lacks of `leader`'s segments, as the follower does; `Err` on a refusal.
fn ship(mirror: &mut Mirror, leader: &Log) -> log_engine::Result<()> {
    for file in leader.segment_files() {
        let id = id_of(&file);
        match mirror.active() {
            Some((active, _)) if id < active => continue,
            None if id.0 < mirror.tip().next_position => continue,
            Some(_) => {}
            None if !file.sealed => mirror.begin(&bytes_of(&file, 0, MIRROR_HEADER_BYTES))?,
            None => {}
        }
        if file.sealed {
            let staged = mirror.stage(id, file.capacity, true)?;
            staged.write_at(staged.from(), &bytes_of(&file, staged.from(), file.bytes))?;
            mirror.install(staged)?;
        } else {
            let (_, end) = mirror.active().unwrap();
            mirror.append(&bytes_of(&file, end, file.bytes))?;
        }
    }
    Ok(())
}

fn same_segments(a: &Path, b: &Path) {
    let names = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d.join("log"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".seg"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(a), names(b));
    for name in names(a) {
        let (x, y) =
            (std::fs::read(a.join("log").join(&name)).unwrap(), std::fs::read(b.join("log").join(&name)).unwrap());
        assert!(x == y, "{name:?} differs between the leader and the mirror");
    }
}

#[test]
fn a_mirror_followed_through_rolls_holds_the_leaders_bytes_and_its_readers_see_them() {
    let (leader_dir, mirror_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = Log::open(leader_dir.path(), options()).unwrap();
    let mut mirror = Mirror::open(mirror_dir.path()).unwrap();
    let reader = Log::open_read_only(mirror_dir.path(), Options::default()).unwrap();
    let mut shipped = 0;
    for round in 0..12 {
        for n in 0..25 {
            leader.append(&format!("s{}", n % 3), ExpectedVersion::Any, vec![event("s", round * 25 + n)]).unwrap();
        }
        ship(&mut mirror, &leader).unwrap();
        reader.refresh().unwrap();
        shipped += 25;
        assert_eq!(reader.head(), leader.head(), "round {round}");
        assert_eq!(reader.read_all(Position(0), 100_000).unwrap().len(), shipped);
    }
    assert!(leader.segment_files().len() >= 4, "the leader rolled while it was followed");
    assert_eq!(mirror.tip().head(), leader.head());
    assert!(reader.verify(None, |_| {}).unwrap().ok);
    drop(mirror);
    // A reopened mirror continues where it stopped.
    leader.append("s0", ExpectedVersion::Any, vec![event("s0", 9999)]).unwrap();
    let mut mirror = Mirror::open(mirror_dir.path()).unwrap();
    ship(&mut mirror, &leader).unwrap();
    assert_eq!(mirror.tip().head(), leader.head());
    drop(mirror);
    leader.close();
    same_segments(leader_dir.path(), mirror_dir.path());
    let reopened = Log::open_read_only(mirror_dir.path(), Options::default()).unwrap();
    assert!(reopened.verify(None, |_| {}).unwrap().ok);
}

#[test]
fn a_segment_the_leader_scavenged_is_refused_on_top_of_the_records_held_and_taken_whole() {
    let (leader_dir, mirror_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = Log::open(leader_dir.path(), options()).unwrap();
    let mut mirror = Mirror::open(mirror_dir.path()).unwrap();
    for n in 0..20 {
        leader.append(if n % 2 == 0 { "doomed" } else { "kept" }, ExpectedVersion::Any, vec![event("x", n)]).unwrap();
    }
    ship(&mut mirror, &leader).unwrap();
    let (active, _) = mirror.active().expect("the mirror holds the first segment active");
    // The leader fills and seals that segment, deletes a stream and scavenges.
    let mut n = 20;
    while leader.segment_files().iter().filter(|f| f.sealed).count() < 2 {
        leader.append("kept", ExpectedVersion::Any, vec![event("kept", n)]).unwrap();
        n += 1;
    }
    leader.delete_stream("doomed", DeleteMode::Soft).unwrap();
    let report = leader.scavenge(&ScavengeOptions::default(), &mut |_| {}).unwrap();
    assert!(report.events_husked > 0, "{report:?}");
    let first = leader.segment_files().into_iter().find(|f| id_of(f) == active).unwrap();
    assert!(first.sealed);
    // On top of the records held (possible only when the rewrite kept the capacity): the new
    // footer does not list them where they are, and the install is refused.
    let staged = mirror.stage(active, first.capacity, true).unwrap();
    if staged.from() > 0 {
        staged.write_at(staged.from(), &bytes_of(&first, staged.from(), first.bytes)).unwrap();
        assert!(mirror.install(staged).is_err(), "a rewritten segment does not extend the records held");
        assert_eq!(mirror.active().map(|a| a.0), Some(active), "a refused install changes nothing");
    } else {
        assert!(first.capacity < 2 * log_engine::SEGMENT_SIZE_MIN, "a smaller rewrite is staged whole");
        drop(staged);
    }
    // Whole, from the leader: taken.
    let staged = mirror.stage(active, first.capacity, false).unwrap();
    assert_eq!(staged.from(), 0);
    staged.write_at(0, &bytes_of(&first, 0, first.bytes)).unwrap();
    mirror.install(staged).unwrap();
    ship(&mut mirror, &leader).unwrap();
    assert_eq!(mirror.tip().head(), leader.head());
    drop(mirror);
    let reader = Log::open_read_only(mirror_dir.path(), Options::default()).unwrap();
    assert!(reader.verify(None, |_| {}).unwrap().ok);
    let husks = reader.read_all(Position(0), 100_000).unwrap().into_iter().filter(|e| e.erased).count();
    assert!(husks > 0, "the husks came with the segment");
}

#[test]
fn a_sealed_segment_with_a_changed_footer_is_refused() {
    let (leader_dir, mirror_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = Log::open(leader_dir.path(), options()).unwrap();
    let mut n = 0;
    while leader.segment_files().iter().filter(|f| f.sealed).count() < 1 {
        leader.append(&format!("s{}", n % 5), ExpectedVersion::Any, vec![event("s", n)]).unwrap();
        n += 1;
    }
    let sealed = leader.segment_files().into_iter().find(|f| f.sealed).unwrap();
    let mut bytes = bytes_of(&sealed, 0, sealed.bytes);
    let mut mirror = Mirror::open(mirror_dir.path()).unwrap();
    // The trailer (last 64 bytes) locates the footer: change a byte of the footer's body,
    // whose record CRC the seal record carries.
    let footer_offset = u64::from_le_bytes(bytes[bytes.len() - 56..bytes.len() - 48].try_into().unwrap()) as usize;
    bytes[footer_offset + 80 + 30] ^= 0x10;
    let staged = mirror.stage(id_of(&sealed), sealed.capacity, false).unwrap();
    staged.write_at(0, &bytes).unwrap();
    let refused = mirror.install(staged).unwrap_err();
    assert!(refused.to_string().contains("footer"), "{refused}");
    assert_eq!(mirror.tip().next_position, 0, "nothing was taken");
    assert!(!mirror_dir.path().join("log").join(format!("{:020}.seg", id_of(&sealed).0)).exists());
    ship(&mut mirror, &leader).unwrap();
    assert_eq!(mirror.tip().head(), leader.head());
}
