//! The flip-alignment term (an optional training objective, [`TrainConfig::flip_alignment`]):
//! where each prototype looks in an image should be where it looks in the image's mirror
//! image, mirrored back. "Where it looks" is the prototype's similarity over the feature
//! map normalised to sum to one, `softmax(−distance)` over the `h·w` cells; the term is the
//! total-variation distance `½ Σ_cells |a − mirror(a_flipped)|` between the two, averaged
//! over images and prototypes: 0 when the prototype follows the mirrored region exactly, 1
//! when its attention moves to cells it had none on.
//!
//! [`TrainConfig::flip_alignment`]: crate::train_config::TrainConfig::flip_alignment

use candle_core::{Device, Tensor};

use crate::distance::{distances_from_squared, squared_distances};
use crate::Result;

/// `x` mirrored along its width axis (`axis`).
pub fn mirror(x: &Tensor, axis: usize) -> Result<Tensor> {
    let w = x.dim(axis)?;
    let reversed: Vec<u32> = (0..w as u32).rev().collect();
    let idx = Tensor::new(reversed.as_slice(), x.device())?;
    Ok(x.index_select(&idx, axis)?)
}

/// Images and their mirror images in one batch: `(2b, c, h, w)`, the mirrors after the
/// originals.
pub fn with_mirrors(images: &Tensor) -> Result<Tensor> {
    Ok(Tensor::cat(&[images, &mirror(images, 3)?], 0)?)
}

/// Where each prototype looks: `softmax(−distance)` over the cells, `(b, n, p)`.
///
/// # Shapes
/// - `patches`: `(b, n, d)`, `prototypes`: `(p, d)`
pub fn attention(patches: &Tensor, prototypes: &Tensor) -> Result<Tensor> {
    let d = distances_from_squared(&squared_distances(patches, prototypes)?)?;
    Ok(candle_nn::ops::softmax(&d.neg()?, 1)?)
}

/// The flip-alignment term of latent patches `patches` of images and `mirrored` of their
/// mirror images, on an `height × width` feature map (a scalar tensor).
///
/// # Shapes
/// - `patches`, `mirrored`: `(b, height·width, d)`, `prototypes`: `(p, d)`
pub fn flip_alignment(
    patches: &Tensor,
    mirrored: &Tensor,
    prototypes: &Tensor,
    height: usize,
    width: usize,
) -> Result<Tensor> {
    let (b, n, _) = patches.dims3()?;
    let p = prototypes.dim(0)?;
    let a = attention(patches, prototypes)?;
    let back = mirror(
        &attention(mirrored, prototypes)?.reshape((b, height, width, p))?,
        2,
    )?
    .reshape((b, n, p))?;
    Ok(((a - back)?.abs()?.sum(1)? * 0.5)?.mean_all()?)
}

/// A zero scalar on `device` (the term when it is off).
pub fn zero(device: &Device) -> Result<Tensor> {
    Ok(Tensor::new(0f32, device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1×3 feature map of 1-d patches for one image.
    fn patches(values: &[f32]) -> Tensor {
        Tensor::new(values, &Device::Cpu)
            .and_then(|t| t.reshape((1, values.len(), 1)))
            .unwrap()
    }

    #[test]
    fn mirrored_attention_aligns_and_a_moved_one_does_not() -> anyhow::Result<()> {
        let protos = Tensor::new(&[[1f32]], &Device::Cpu)?;
        // The prototype (value 1) sits in the left cell; in the mirror image in the right.
        let image = patches(&[1.0, 0.0, 0.0]);
        let mirror_image = patches(&[0.0, 0.0, 1.0]);
        let aligned = flip_alignment(&image, &mirror_image, &protos, 1, 3)?.to_scalar::<f32>()?;
        assert!(aligned.abs() < 1e-6, "{aligned}");
        // A mirror image in which it stays on the left: the attention moves from the left
        // cell to the right one once mirrored back. By hand: attention softmax(−|x − 1|)
        // over cells (1, 0, 0) is (e⁰, e⁻¹, e⁻¹) / (1 + 2/e); mirrored back it is
        // (e⁻¹, e⁻¹, e⁰) / (1 + 2/e); half the L1 distance is (1 − 1/e) / (1 + 2/e).
        let moved = flip_alignment(&image, &image, &protos, 1, 3)?.to_scalar::<f32>()?;
        let e = std::f32::consts::E;
        let want = (1.0 - 1.0 / e) / (1.0 + 2.0 / e);
        assert!((moved - want).abs() < 1e-5, "{moved} vs {want}");
        // Mirroring twice is the identity; images and mirrors stack.
        let x = Tensor::arange(0f32, 12.0, &Device::Cpu)?.reshape((1, 1, 3, 4))?;
        assert_eq!(
            mirror(&mirror(&x, 3)?, 3)?
                .flatten_all()?
                .to_vec1::<f32>()?,
            x.flatten_all()?.to_vec1::<f32>()?
        );
        let both = with_mirrors(&x)?;
        assert_eq!(both.dims(), &[2, 1, 3, 4]);
        assert_eq!(
            both.get(1)?.flatten_all()?.to_vec1::<f32>()?[..4],
            [3.0, 2.0, 1.0, 0.0]
        );
        Ok(())
    }

    #[test]
    fn its_gradient_matches_finite_differences() -> anyhow::Result<()> {
        // Two images of a 2×2 map of 2-d patches, two prototypes.
        let dev = Device::Cpu;
        let raw: Vec<f32> = (0..16).map(|i| ((i * 7 % 11) as f32) / 10.0).collect();
        let mirrored: Vec<f32> = (0..16).map(|i| ((i * 5 % 13) as f32) / 12.0).collect();
        let protos = Tensor::new(&[[0.2f32, 0.9], [0.7, 0.1]], &dev)?;
        let m = Tensor::new(mirrored.as_slice(), &dev)?.reshape((2, 4, 2))?;
        let f = |v: &[f32]| -> anyhow::Result<f32> {
            let p = Tensor::new(v, &dev)?.reshape((2, 4, 2))?;
            Ok(flip_alignment(&p, &m, &protos, 2, 2)?.to_scalar::<f32>()?)
        };
        let var =
            candle_core::Var::from_tensor(&Tensor::new(raw.as_slice(), &dev)?.reshape((2, 4, 2))?)?;
        let loss = flip_alignment(var.as_tensor(), &m, &protos, 2, 2)?;
        let grad = loss
            .backward()?
            .get(var.as_tensor())
            .ok_or_else(|| anyhow::anyhow!("no gradient"))?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let h = 1e-2f32;
        for i in 0..raw.len() {
            let (mut up, mut down) = (raw.clone(), raw.clone());
            up[i] += h;
            down[i] -= h;
            let numeric = (f(&up)? - f(&down)?) / (2.0 * h);
            assert!(
                (numeric - grad[i]).abs() < 2e-3,
                "patch value {i}: analytic {} numeric {numeric}",
                grad[i]
            );
        }
        Ok(())
    }
}
