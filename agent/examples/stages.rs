use earshot_agent::{config::AgentConfig, ingest::Ingestor, logline::parse_line};
use std::hint::black_box;
use std::time::Instant;
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let data = std::fs::read(&path).unwrap();
    let lines: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let n = lines.len() as f64;
    let mode = std::env::args().nth(2).unwrap_or_default();
    if mode == "parse" {
        for _ in 0..5 {
            let t = Instant::now();
            for l in &lines {
                black_box(parse_line(black_box(l)).ok());
            }
            println!("parse  {:6.1} ns/line", t.elapsed().as_nanos() as f64 / n);
        }
        return;
    }
    if mode == "parse1" {
        for l in &lines {
            black_box(parse_line(black_box(l)).ok());
        }
        return;
    }
    if mode == "load" {
        black_box(&lines);
        return;
    }
    if mode == "feed" {
        let mut ing = Ingestor::new(
            &AgentConfig::defaults(),
            b"0123456789abcdef0123456789abcdef".to_vec(),
        )
        .unwrap();
        for l in &lines {
            ing.feed(l);
        }
        ing.close_all();
        black_box(ing.take());
        return;
    }
    for _ in 0..2 {
        let t = Instant::now();
        for l in &lines {
            black_box(parse_line(black_box(l)).ok());
        }
        println!("parse  {:6.1} ns/line", t.elapsed().as_nanos() as f64 / n);
        let mut ing = Ingestor::new(
            &AgentConfig::defaults(),
            b"0123456789abcdef0123456789abcdef".to_vec(),
        )
        .unwrap();
        let t = Instant::now();
        for l in &lines {
            ing.feed(l);
        }
        ing.close_all();
        println!("feed   {:6.1} ns/line", t.elapsed().as_nanos() as f64 / n);
        let t = Instant::now();
        black_box(ing.take());
        println!("take   {:6.1} ms", t.elapsed().as_millis());
    }
}
