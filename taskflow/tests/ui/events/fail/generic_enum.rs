// #[events] enums cannot be generic
use taskflow::prelude::*;

#[events]
enum Progress<T> {
    Tick(T),
}

fn main() {}
