//! A structural check of a Parquet file's page headers before polars decodes it: a corrupt header
//! with a negative count makes the decoder allocate exabytes and abort the process, which no error
//! handling can catch. Each column chunk's pages are walked (thrift compact protocol) and every
//! 32-bit field of every page header must be non-negative, every page must fit inside its chunk.

use std::ops::Range;

/// Walk the pages of one column chunk (`range` = its bytes in `file`).
pub(crate) fn check_chunk(file: &[u8], range: Range<u64>) -> Result<(), String> {
    let (start, end) = (range.start as usize, range.end as usize);
    if start > end || end > file.len() {
        return Err("a column chunk lies outside the file".into());
    }
    let mut pos = start;
    let mut pages = 0;
    while pos < end {
        let mut r = Reader {
            buf: &file[..end],
            pos,
        };
        let compressed = r.page_header()?;
        pos = r
            .pos
            .checked_add(compressed)
            .filter(|&p| p <= end)
            .ok_or("a page runs past the end of its column chunk")?;
        pages += 1;
        if pages > 1 << 24 {
            return Err("too many pages".into());
        }
    }
    Ok(())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or("a page header runs past the end of its column chunk")?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift.min(63);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint in a page header is too long".into())
    }

    fn zigzag(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        let n = usize::try_from(n).map_err(|_| "a length in a page header is too large")?;
        self.pos = self
            .pos
            .checked_add(n)
            .filter(|&p| p <= self.buf.len())
            .ok_or("a page header runs past the end of its column chunk")?;
        Ok(())
    }

    /// A value of compact type `t`; i32 values are returned (others 0). Negative i32s are errors.
    fn value(&mut self, t: u8, depth: usize) -> Result<i64, String> {
        match t {
            1 | 2 => Ok(0),
            3 => self.byte().map(|_| 0),
            4 | 6 => self.zigzag().map(|_| 0),
            5 => {
                let v = self.zigzag()?;
                if v < 0 || v > i64::from(i32::MAX) {
                    return Err(format!("a page header holds the count {v}"));
                }
                Ok(v)
            }
            7 => self.skip(8).map(|_| 0),
            8 => {
                let n = self.varint()?;
                self.skip(n).map(|_| 0)
            }
            9 | 10 => {
                let h = self.byte()?;
                let n = match h >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                for _ in 0..n {
                    self.value(h & 0x0f, depth + 1)?;
                }
                Ok(0)
            }
            11 => {
                let n = self.varint()?;
                if n > 0 {
                    let kv = self.byte()?;
                    for _ in 0..n {
                        self.value(kv >> 4, depth + 1)?;
                        self.value(kv & 0x0f, depth + 1)?;
                    }
                }
                Ok(0)
            }
            12 => self.structure(depth + 1).map(|_| 0),
            other => Err(format!("unknown thrift type {other} in a page header")),
        }
    }

    /// A struct; returns field 3's i32 (the compressed page size, for the top-level page header).
    fn structure(&mut self, depth: usize) -> Result<Option<i64>, String> {
        if depth > 16 {
            return Err("page header nested too deeply".into());
        }
        let (mut id, mut field3) = (0i64, None);
        loop {
            let h = self.byte()?;
            if h == 0 {
                return Ok(field3);
            }
            let delta = h >> 4;
            id = if delta == 0 {
                self.zigzag()?
            } else {
                id + i64::from(delta)
            };
            let v = self.value(h & 0x0f, depth)?;
            if id == 3 && h & 0x0f == 5 {
                field3 = Some(v);
            }
        }
    }

    /// A page header; returns the page's compressed size.
    fn page_header(&mut self) -> Result<usize, String> {
        let size = self
            .structure(0)?
            .ok_or("a page header has no compressed page size")?;
        Ok(size as usize)
    }
}
