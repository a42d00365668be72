//! The scGPT encoder forward pass (eval mode), as `TransformerModel._encode` in the official code.
//!
//! ```text
//! gene  = LN(Embedding(ids))                                   GeneEncoder
//! value = LN(W2 relu(W1 min(v, 512) + b1) + b2)                ContinuousValueEncoder
//! x     = gene + value                                         ("embeddings", before block 0)
//! block: x = LN1(x + MHA(x, key_padding_mask))                 post-norm, no causal mask
//!        x = LN2(x + W2 relu(W1 x + b1) + b2)                  (output = "layer i")
//! ```
//! LayerNorm eps is 1e-5; attention is softmax(q k^T / sqrt(head_dim)) over the cell's real tokens only
//! (the official key padding mask: pad keys get weight 0); there is no positional encoding and no final
//! norm. Outputs at pad query positions are meaningless and must never be pooled. Attention and pooling
//! read only the cell's own tokens, so a cell's results do not depend on its batch partners or padding
//! (bit for bit at realistic sizes; only the linear layers see the batch's row count).

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::scgpt::attention_cpu;
use crate::scgpt::config::ScgptConfig;
use crate::scgpt::tokenize::TokenizedCell;

/// LayerNorm epsilon of every norm in scGPT (PyTorch's default).
pub const LN_EPS: f32 = 1e-5;
/// Upper clamp of values in the continuous value encoder (`max_value`).
pub const VALUE_MAX: f64 = 512.0;

/// A linear layer `y = x W^T + b` with PyTorch's `[out, in]` weight layout.
#[derive(Debug, Clone)]
pub struct Linear {
    /// `[out, in]` weight.
    pub weight: Tensor,
    /// `[out]` bias.
    pub bias: Tensor,
}

impl Linear {
    /// Apply to `x` of shape `[n, in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?)
    }
}

/// A LayerNorm's affine parameters.
#[derive(Debug, Clone)]
pub struct Norm {
    /// `[d]` scale.
    pub weight: Tensor,
    /// `[d]` shift.
    pub bias: Tensor,
}

impl Norm {
    /// Normalise the last dimension of `x` (eps 1e-5).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(
            x,
            &self.weight,
            &self.bias,
            LN_EPS,
        )?)
    }
}

/// The weights of one post-norm transformer block.
#[derive(Debug, Clone)]
pub struct Block {
    /// Packed `[q; k; v]` input projection, `[3d, d]`.
    pub qkv: Linear,
    /// Attention output projection, `[d, d]`.
    pub out_proj: Linear,
    /// Feed-forward `d -> d_hid`.
    pub linear1: Linear,
    /// Feed-forward `d_hid -> d`.
    pub linear2: Linear,
    /// Norm after attention.
    pub norm1: Norm,
    /// Norm after the feed-forward.
    pub norm2: Norm,
}

/// A padded batch of tokenised cells on the model's device.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[b, l]` token ids (U32), `<pad>` after each cell's end.
    pub gene_ids: Tensor,
    /// `[b, l]` values (model dtype), `pad_value` at `<cls>` and pads.
    pub values: Tensor,
    /// Real length of every cell (`<cls>` included).
    pub lengths: Vec<usize>,
    /// Padded length `l`.
    pub max_len: usize,
}

impl Batch {
    /// Pad `cells` to the longest one with `pad_id` / `pad_value`.
    pub fn new(
        cells: &[&TokenizedCell],
        pad_id: u32,
        pad_value: f32,
        device: &Device,
        dtype: DType,
    ) -> Result<Batch> {
        if cells.is_empty() {
            return Err(Error::invalid("empty batch"));
        }
        let max_len = cells.iter().map(|c| c.len()).max().unwrap_or(1);
        let b = cells.len();
        let mut ids = vec![pad_id; b * max_len];
        let mut vals = vec![pad_value; b * max_len];
        for (i, c) in cells.iter().enumerate() {
            let row = i * max_len;
            ids[row..row + c.len()].copy_from_slice(&c.gene_ids);
            vals[row..row + c.len()].copy_from_slice(&c.values);
        }
        Ok(Batch {
            gene_ids: Tensor::from_vec(ids, (b, max_len), device)?,
            values: Tensor::from_vec(vals, (b, max_len), device)?.to_dtype(dtype)?,
            lengths: cells.iter().map(|c| c.len()).collect(),
            max_len,
        })
    }

    /// Number of cells.
    pub fn size(&self) -> usize {
        self.lengths.len()
    }
}

/// Which activation a forward-pass callback receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Site {
    /// Gene + value embedding, the input of block 0.
    Embeddings,
    /// Output of block `i` (after `norm2`).
    Block(usize),
}

/// The scGPT encoder with its weights on a device.
#[derive(Debug, Clone)]
pub struct ScgptModel {
    /// Sizes from `args.json`.
    pub config: ScgptConfig,
    /// `[V, d]` gene token embedding.
    pub gene_embedding: Tensor,
    /// LayerNorm after the gene embedding (`encoder.enc_norm`).
    pub gene_norm: Norm,
    /// Value encoder `1 -> d`.
    pub value_linear1: Linear,
    /// Value encoder `d -> d`.
    pub value_linear2: Linear,
    /// Value encoder LayerNorm.
    pub value_norm: Norm,
    /// Transformer blocks.
    pub blocks: Vec<Block>,
    /// Device of every weight.
    pub device: Device,
    /// Dtype of every weight and activation.
    pub dtype: DType,
}

impl ScgptModel {
    /// Model width.
    pub fn d_model(&self) -> usize {
        self.config.embsize
    }

    /// Number of tokens the gene embedding knows.
    pub fn vocab_size(&self) -> usize {
        self.gene_embedding.dims().first().copied().unwrap_or(0)
    }

    /// Encoder input `[b, l, d]`: gene embedding (normed) + value embedding (normed).
    pub fn embed(&self, batch: &Batch) -> Result<Tensor> {
        let (b, l) = batch.gene_ids.dims2()?;
        let d = self.d_model();
        let ids = batch.gene_ids.flatten_all()?;
        let genes = self
            .gene_norm
            .forward(&self.gene_embedding.index_select(&ids, 0)?)?;
        let v = batch.values.reshape((b * l, 1))?.minimum(VALUE_MAX)?;
        let v = self.value_linear1.forward(&v)?.relu()?;
        let v = self.value_norm.forward(&self.value_linear2.forward(&v)?)?;
        Ok((genes + v)?.reshape((b, l, d))?)
    }

    /// Run every block, calling `visit` with the embeddings and each block's output (`[b, l, d]`).
    /// Returns the last block's output.
    pub fn forward_with<F>(&self, batch: &Batch, mut visit: F) -> Result<Tensor>
    where
        F: FnMut(Site, &Tensor) -> Result<()>,
    {
        let mut x = self.embed(batch)?;
        visit(Site::Embeddings, &x)?;
        for (i, block) in self.blocks.iter().enumerate() {
            x = self.block_forward(block, &x, &batch.lengths)?;
            visit(Site::Block(i), &x)?;
        }
        Ok(x)
    }

    /// The activation at `site` (`[b, l, d]`): the embeddings, or the output of block `i` after
    /// running blocks `0..=i`.
    pub fn forward_to(&self, batch: &Batch, site: Site) -> Result<Tensor> {
        let x = self.embed(batch)?;
        match site {
            Site::Embeddings => Ok(x),
            Site::Block(i) => self.run_blocks(x, 0..i + 1, &batch.lengths),
        }
    }

    /// Continue from the activation `x` at `site` (`[b, l, d]`, possibly edited) through the
    /// remaining blocks; returns the last block's output. Together with [`ScgptModel::forward_to`]
    /// this is [`ScgptModel::forward_with`] with an intervention at `site`.
    pub fn forward_from(&self, x: Tensor, site: Site, lengths: &[usize]) -> Result<Tensor> {
        let first = match site {
            Site::Embeddings => 0,
            Site::Block(i) => i + 1,
        };
        self.run_blocks(x, first..self.blocks.len(), lengths)
    }

    fn run_blocks(
        &self,
        mut x: Tensor,
        range: std::ops::Range<usize>,
        lengths: &[usize],
    ) -> Result<Tensor> {
        if range.end > self.blocks.len() {
            return Err(Error::invalid(format!(
                "block {} does not exist: the model has {} blocks",
                range.end - 1,
                self.blocks.len()
            )));
        }
        for block in &self.blocks[range] {
            x = self.block_forward(block, &x, lengths)?;
        }
        Ok(x)
    }

    /// The embeddings followed by every block's output, each `[b, l, d]` (convenient for small
    /// batches; [`ScgptModel::forward_with`] keeps memory bounded).
    pub fn forward_all(&self, batch: &Batch) -> Result<Vec<Tensor>> {
        let mut out = Vec::with_capacity(self.blocks.len() + 1);
        self.forward_with(batch, |_, t| {
            out.push(t.clone());
            Ok(())
        })?;
        Ok(out)
    }

    fn block_forward(&self, block: &Block, x: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let (b, l, d) = x.dims3()?;
        let flat = x.reshape((b * l, d))?;
        let attn = self.attention(block, &flat, b, l, lengths)?;
        let h = block.norm1.forward(&(flat + attn)?)?;
        let ff = block.linear2.forward(&block.linear1.forward(&h)?.relu()?)?;
        let out = block.norm2.forward(&(h + ff)?)?;
        Ok(out.reshape((b, l, d))?)
    }

    /// Multi-head self-attention of `x` (`[b*l, d]`); returns `[b*l, d]`.
    ///
    /// Each cell attends over its own `lengths[i]` real tokens only: this is exactly the official
    /// key padding mask (a pad key gets weight exp(-inf) = 0), and it makes every real position's
    /// result independent of how much padding the batch has, bit for bit. Pad query rows are zero.
    fn attention(
        &self,
        block: &Block,
        x: &Tensor,
        b: usize,
        l: usize,
        lengths: &[usize],
    ) -> Result<Tensor> {
        let d = self.d_model();
        let h = self.config.nheads;
        let hd = self.config.head_dim();
        let qkv = block.qkv.forward(x)?;
        if qkv.device().is_cpu() && qkv.dtype() == DType::F32 {
            let o = {
                let (storage, layout) = qkv.storage_and_layout();
                let data = match &*storage {
                    candle_core::Storage::Cpu(s) => s.as_slice::<f32>()?,
                    _ => unreachable!("checked: a CPU tensor"),
                };
                let (a, z) = layout
                    .contiguous_offsets()
                    .ok_or_else(|| Error::invalid("attention: non-contiguous projections"))?;
                attention_cpu::attention(&data[a..z], b, l, h, hd, lengths)
            };
            let o = Tensor::from_vec(o, (b * l, d), x.device())?;
            return block.out_proj.forward(&o);
        }
        let qkv = qkv.reshape((b, l, 3, h, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut outs = Vec::with_capacity(b);
        for (i, &len) in lengths.iter().enumerate() {
            let cell = qkv.narrow(0, i, 1)?.narrow(1, 0, len)?; // [1, len, 3, h, hd]
            let part = |k: usize| -> Result<Tensor> {
                Ok(cell
                    .narrow(2, k, 1)?
                    .squeeze(2)?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let (q, k, v) = ((part(0)? * scale)?, part(1)?, part(2)?); // [1, h, len, hd]
            let probs = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
            let o = probs.matmul(&v)?.transpose(1, 2)?.reshape((1, len, d))?;
            let o = if len < l {
                let pad = Tensor::zeros((1, l - len, d), o.dtype(), o.device())?;
                Tensor::cat(&[o, pad], 1)?
            } else {
                o
            };
            outs.push(o);
        }
        let o = Tensor::cat(&outs, 0)?.reshape((b * l, d))?;
        block.out_proj.forward(&o)
    }
}

/// Mean over each cell's `count[i]` positions starting at `start[i]`: `x` is `[b, l, d]`, the
/// result `[b, d]` (a row with no position is zero). Each mean reads only its own positions, so it
/// does not depend on the batch's padding.
pub fn masked_mean(x: &Tensor, start: &[usize], count: &[usize]) -> Result<Tensor> {
    let (b, _, d) = x.dims3()?;
    let mut rows = Vec::with_capacity(b);
    for (i, (&s, &n)) in start.iter().zip(count).enumerate().take(b) {
        if n == 0 {
            rows.push(Tensor::zeros((1, d), x.dtype(), x.device())?);
        } else {
            let sum = x.narrow(0, i, 1)?.narrow(1, s, n)?.sum(1)?;
            rows.push((sum / n as f64)?);
        }
    }
    Ok(Tensor::cat(&rows, 0)?)
}

/// Row-wise L2 normalisation of a `[b, d]` matrix held as row-major values (as numpy
/// `x / np.linalg.norm(x, axis=1, keepdims=True)`; a zero row stays zero).
pub fn l2_normalise_rows(data: &mut [f32], d: usize) {
    for row in data.chunks_mut(d.max(1)) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
}

/// `[b, l, d]` activations to `f32` row-major values on the CPU.
pub fn to_f32_vec(x: &Tensor) -> Result<Vec<f32>> {
    Ok(x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// The `[b, d]` slice at position 0 of `[b, l, d]`.
pub fn first_position(x: &Tensor) -> Result<Tensor> {
    Ok(x.narrow(1, 0, 1)?.squeeze(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Plain-loop reference of the same equations, written independently of the candle code.
    struct Naive {
        d: usize,
        h: usize,
        emb: Vec<Vec<f64>>,
        gn: (Vec<f64>, Vec<f64>),
        v1: (Vec<Vec<f64>>, Vec<f64>),
        v2: (Vec<Vec<f64>>, Vec<f64>),
        vn: (Vec<f64>, Vec<f64>),
        blocks: Vec<NaiveBlock>,
    }
    struct NaiveBlock {
        qkv: (Vec<Vec<f64>>, Vec<f64>),
        out: (Vec<Vec<f64>>, Vec<f64>),
        l1: (Vec<Vec<f64>>, Vec<f64>),
        l2: (Vec<Vec<f64>>, Vec<f64>),
        n1: (Vec<f64>, Vec<f64>),
        n2: (Vec<f64>, Vec<f64>),
    }

    fn ln(x: &[f64], p: &(Vec<f64>, Vec<f64>)) -> Vec<f64> {
        let n = x.len() as f64;
        let m = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n;
        x.iter()
            .enumerate()
            .map(|(i, v)| (v - m) / (var + 1e-5).sqrt() * p.0[i] + p.1[i])
            .collect()
    }
    fn lin(x: &[f64], p: &(Vec<Vec<f64>>, Vec<f64>)) -> Vec<f64> {
        p.0.iter()
            .zip(&p.1)
            .map(|(w, b)| w.iter().zip(x).map(|(a, c)| a * c).sum::<f64>() + b)
            .collect()
    }

    impl Naive {
        fn run(&self, ids: &[u32], vals: &[f32]) -> Vec<Vec<Vec<f64>>> {
            let d = self.d;
            let mut x: Vec<Vec<f64>> = ids
                .iter()
                .zip(vals)
                .map(|(&id, &v)| {
                    let g = ln(&self.emb[id as usize], &self.gn);
                    let v = (v as f64).min(512.0);
                    let h1: Vec<f64> = lin(&[v], &self.v1)
                        .into_iter()
                        .map(|a| a.max(0.0))
                        .collect();
                    let vv = ln(&lin(&h1, &self.v2), &self.vn);
                    g.iter().zip(&vv).map(|(a, b)| a + b).collect()
                })
                .collect();
            let mut outs = vec![x.clone()];
            let hd = d / self.h;
            for blk in &self.blocks {
                let qkv: Vec<Vec<f64>> = x.iter().map(|t| lin(t, &blk.qkv)).collect();
                let n = x.len();
                let mut att = vec![vec![0f64; d]; n];
                for head in 0..self.h {
                    for i in 0..n {
                        let q = &qkv[i][head * hd..(head + 1) * hd];
                        let s: Vec<f64> = (0..n)
                            .map(|j| {
                                let k = &qkv[j][d + head * hd..d + (head + 1) * hd];
                                q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>()
                                    / (hd as f64).sqrt()
                            })
                            .collect();
                        let mx = s.iter().cloned().fold(f64::MIN, f64::max);
                        let e: Vec<f64> = s.iter().map(|v| (v - mx).exp()).collect();
                        let z: f64 = e.iter().sum();
                        for j in 0..n {
                            for c in 0..hd {
                                att[i][head * hd + c] += e[j] / z * qkv[j][2 * d + head * hd + c];
                            }
                        }
                    }
                }
                x = x
                    .iter()
                    .zip(&att)
                    .map(|(t, a)| {
                        let o = lin(a, &blk.out);
                        let r: Vec<f64> = t.iter().zip(&o).map(|(p, q)| p + q).collect();
                        let h = ln(&r, &blk.n1);
                        let f: Vec<f64> =
                            lin(&h, &blk.l1).into_iter().map(|v| v.max(0.0)).collect();
                        let f = lin(&f, &blk.l2);
                        let r: Vec<f64> = h.iter().zip(&f).map(|(p, q)| p + q).collect();
                        ln(&r, &blk.n2)
                    })
                    .collect();
                outs.push(x.clone());
            }
            outs
        }
    }

    fn rand_mat(rng: &mut ChaCha8Rng, r: usize, c: usize, s: f64) -> Vec<Vec<f64>> {
        (0..r)
            .map(|_| (0..c).map(|_| rng.random_range(-s..s)).collect())
            .collect()
    }
    fn rand_vec(rng: &mut ChaCha8Rng, r: usize, s: f64, base: f64) -> Vec<f64> {
        (0..r).map(|_| base + rng.random_range(-s..s)).collect()
    }
    fn t2(m: &[Vec<f64>]) -> Tensor {
        let r = m.len();
        let c = m[0].len();
        let v: Vec<f32> = m.iter().flatten().map(|&x| x as f32).collect();
        Tensor::from_vec(v, (r, c), &Device::Cpu).unwrap()
    }
    fn t1(v: &[f64]) -> Tensor {
        Tensor::from_vec(
            v.iter().map(|&x| x as f32).collect::<Vec<_>>(),
            v.len(),
            &Device::Cpu,
        )
        .unwrap()
    }
    // weights rounded to f32 first so both sides see the same numbers
    fn f32ify(m: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
        m.into_iter()
            .map(|r| r.into_iter().map(|x| x as f32 as f64).collect())
            .collect()
    }
    fn f32v(v: Vec<f64>) -> Vec<f64> {
        v.into_iter().map(|x| x as f32 as f64).collect()
    }

    fn random_pair(
        seed: u64,
        v: usize,
        d: usize,
        h: usize,
        d_hid: usize,
        nl: usize,
    ) -> (Naive, ScgptModel) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let lp = |rng: &mut ChaCha8Rng, o: usize, i: usize| {
            (
                f32ify(rand_mat(rng, o, i, 0.5)),
                f32v(rand_vec(rng, o, 0.1, 0.0)),
            )
        };
        let np = |rng: &mut ChaCha8Rng| {
            (
                f32v(rand_vec(rng, d, 0.2, 1.0)),
                f32v(rand_vec(rng, d, 0.1, 0.0)),
            )
        };
        let naive = Naive {
            d,
            h,
            emb: f32ify(rand_mat(&mut rng, v, d, 1.0)),
            gn: np(&mut rng),
            v1: lp(&mut rng, d, 1),
            v2: lp(&mut rng, d, d),
            vn: np(&mut rng),
            blocks: (0..nl)
                .map(|_| NaiveBlock {
                    qkv: lp(&mut rng, 3 * d, d),
                    out: lp(&mut rng, d, d),
                    l1: lp(&mut rng, d_hid, d),
                    l2: lp(&mut rng, d, d_hid),
                    n1: np(&mut rng),
                    n2: np(&mut rng),
                })
                .collect(),
        };
        let linr = |p: &(Vec<Vec<f64>>, Vec<f64>)| Linear {
            weight: t2(&p.0),
            bias: t1(&p.1),
        };
        let nrm = |p: &(Vec<f64>, Vec<f64>)| Norm {
            weight: t1(&p.0),
            bias: t1(&p.1),
        };
        let model = ScgptModel {
            config: ScgptConfig {
                embsize: d,
                nheads: h,
                d_hid,
                nlayers: nl,
                ..ScgptConfig::default()
            },
            gene_embedding: t2(&naive.emb),
            gene_norm: nrm(&naive.gn),
            value_linear1: linr(&naive.v1),
            value_linear2: linr(&naive.v2),
            value_norm: nrm(&naive.vn),
            blocks: naive
                .blocks
                .iter()
                .map(|b| Block {
                    qkv: linr(&b.qkv),
                    out_proj: linr(&b.out),
                    linear1: linr(&b.l1),
                    linear2: linr(&b.l2),
                    norm1: nrm(&b.n1),
                    norm2: nrm(&b.n2),
                })
                .collect(),
            device: Device::Cpu,
            dtype: DType::F32,
        };
        (naive, model)
    }

    fn cell(ids: &[u32], vals: &[f32]) -> TokenizedCell {
        TokenizedCell {
            gene_ids: ids.to_vec(),
            values: vals.to_vec(),
            n_expressed: ids.len() - 1,
        }
    }

    #[test]
    fn forward_matches_a_plain_loop_reference_with_padding() {
        let (naive, model) = random_pair(7, 12, 8, 2, 16, 2);
        let a = cell(&[10, 1, 2, 3, 4], &[-2.0, 1.0, 5.0, 50.0, 600.0]);
        let b = cell(&[10, 5, 6], &[-2.0, 3.0, 2.0]);
        let batch = Batch::new(&[&a, &b], 11, -2.0, &Device::Cpu, DType::F32).unwrap();
        assert_eq!(batch.max_len, 5);
        let outs = model.forward_all(&batch).unwrap();
        assert_eq!(outs.len(), 3);
        for (ci, c) in [&a, &b].iter().enumerate() {
            let want = naive.run(&c.gene_ids, &c.values);
            for (site, t) in outs.iter().enumerate() {
                let got = t.get(ci).unwrap().to_vec2::<f32>().unwrap();
                for p in 0..c.len() {
                    for k in 0..8 {
                        let diff = (got[p][k] as f64 - want[site][p][k]).abs();
                        assert!(diff < 1e-4, "cell {ci} site {site} pos {p} dim {k}: {diff}");
                    }
                }
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_batch_partners() {
        let (_, model) = random_pair(3, 12, 8, 4, 8, 2);
        let a = cell(&[10, 1, 2], &[-2.0, 1.0, 2.0]);
        let b = cell(
            &[10, 3, 4, 5, 6, 7, 8],
            &[-2.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        );
        let alone = Batch::new(&[&a], 11, -2.0, &Device::Cpu, DType::F32).unwrap();
        let both = Batch::new(&[&b, &a], 11, -2.0, &Device::Cpu, DType::F32).unwrap();
        let x = model.forward_all(&alone).unwrap();
        let y = model.forward_all(&both).unwrap();
        for (s, (u, v)) in x.iter().zip(&y).enumerate() {
            let u = u.get(0).unwrap().to_vec2::<f32>().unwrap();
            let v = v
                .get(1)
                .unwrap()
                .narrow(0, 0, 3)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            for (p, (ru, rv)) in u.iter().zip(&v).enumerate() {
                for (k, (x, y)) in ru.iter().zip(rv).enumerate() {
                    // attention and pooling are per cell; only the row count of the linear layers'
                    // matmuls changes, and tiny matrices (d = 8) take another gemm kernel
                    assert!(
                        (x - y).abs() <= 1e-6,
                        "site {s} pos {p} dim {k}: {x} vs {y}"
                    );
                }
            }
        }
    }

    #[test]
    fn masked_mean_and_l2_norm_by_hand() {
        let x = Tensor::from_vec(
            vec![1f32, 2., 3., 4., 100., 100., 5., 6., 7., 8., 9., 10.],
            (2, 3, 2),
            &Device::Cpu,
        )
        .unwrap();
        let m = masked_mean(&x, &[0, 1], &[2, 2])
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(m, vec![vec![2., 3.], vec![8., 9.]]);
        let mut v = vec![3f32, 4., 0., 0.];
        l2_normalise_rows(&mut v, 2);
        assert_eq!(v, vec![0.6, 0.8, 0.0, 0.0]);
    }
}
