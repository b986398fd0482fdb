//! The report's prototype gallery: one card per decision node with its projected patch,
//! what is known about it (purity, whether its part separates its subtrees) and its most
//! similar training patches; and the tree's interaction (zoom, a click on a node shows
//! its card beside the tree).

use std::fmt::Write as _;

use crate::svg::{escape, png_data_uri};

/// One of a prototype's most similar training patches.
#[derive(Debug, Clone)]
pub struct GalleryPatch {
    /// The patch, cropped from its image as the model saw it (PNG bytes).
    pub png: Vec<u8>,
    /// A short caption (class, part under the patch, similarity).
    pub caption: String,
}

/// One prototype in the gallery.
#[derive(Debug, Clone, Default)]
pub struct GalleryEntry {
    /// Node label (reference numbering).
    pub node: String,
    /// The prototype's source patch (PNG bytes).
    pub patch_png: Vec<u8>,
    /// The source image with the patch's box (PNG bytes).
    pub boxed_png: Vec<u8>,
    /// A caption (source image, distance).
    pub caption: String,
    /// Facts about the prototype (label, value), e.g. its purity and whether it separates
    /// its subtrees, in display order.
    pub facts: Vec<(String, String)>,
    /// Its most similar training patches, nearest first (one per image).
    pub top_patches: Vec<GalleryPatch>,
}

/// CSS of the gallery cards and the tree viewer.
pub(crate) const GALLERY_STYLE: &str = ".gallery{display:flex;flex-wrap:wrap;gap:12px}\
.card{border:1px solid #ddd;padding:6px;width:240px;font-size:12px;overflow-wrap:anywhere}\
.card.wide{width:360px}.card:target{outline:3px solid #ff9800}\
.card img{image-rendering:pixelated;margin-right:4px;vertical-align:top}\
.card table{font-size:11px;margin:4px 0}.card td,.card th{padding:1px 4px}\
.tops{display:flex;flex-wrap:wrap;gap:2px}.tops img{width:32px;height:32px;margin:0}\
.viewer{display:flex;gap:12px;align-items:flex-start}\
.tree{overflow:auto;border:1px solid #ddd;padding:8px;flex:1;max-height:80vh}\
.tree svg{max-width:none}.tree-node{cursor:pointer}.tree-node:hover rect{stroke:#ff9800}\
.zoom button{margin-right:4px}\
#node-panel{width:380px;position:sticky;top:8px}#node-panel:empty{display:none}";

/// The viewer's script: zoom buttons scale the SVG; a click on a decision node copies its
/// gallery card into the panel beside the tree (without scripts, the node links jump to the
/// card).
pub(crate) const VIEWER_SCRIPT: &str = r#"<script>
(function(){
var box=document.querySelector('.tree'),svg=box&&box.querySelector('svg');
if(!svg)return;
var w0=svg.viewBox.baseVal.width||svg.width.baseVal.value,h0=svg.viewBox.baseVal.height||svg.height.baseVal.value,z=1;
function zoom(f){z=f===0?Math.min(1,box.clientWidth/w0):Math.max(0.1,Math.min(8,z*f));svg.setAttribute('width',w0*z);svg.setAttribute('height',h0*z);}
document.querySelectorAll('.zoom button').forEach(function(b){b.addEventListener('click',function(){zoom(parseFloat(b.dataset.f));});});
zoom(0);
var panel=document.getElementById('node-panel');
svg.querySelectorAll('a.tree-node').forEach(function(a){a.addEventListener('click',function(e){
var card=document.getElementById('node-'+a.dataset.node);if(!card||!panel)return;
e.preventDefault();panel.innerHTML='';var c=card.cloneNode(true);c.removeAttribute('id');c.classList.add('wide');panel.appendChild(c);});});
})();
</script>
"#;

/// Writes the tree viewer: zoom buttons, the SVG document `svg` and the panel a clicked
/// node's card is shown in.
pub(crate) fn write_tree_viewer(s: &mut String, svg: &str) {
    // The SVG document is inlined without its XML prolog, if any.
    let svg = svg.trim_start();
    let svg = match svg.strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>").map(|(_, r)| r).unwrap_or(rest),
        None => svg,
    };
    s.push_str("<div class=\"zoom\"><button type=\"button\" data-f=\"1.25\">zoom in</button><button type=\"button\" data-f=\"0.8\">zoom out</button><button type=\"button\" data-f=\"0\">fit</button> click a node to see its prototype's gallery</div>\n");
    s.push_str("<div class=\"viewer\"><div class=\"tree\">\n");
    s.push_str(svg);
    s.push_str("</div><div id=\"node-panel\"></div></div>\n");
}

/// Writes the gallery section's cards.
pub(crate) fn write_gallery(s: &mut String, gallery: &[GalleryEntry]) {
    s.push_str("<div class=\"gallery\">\n");
    for g in gallery {
        let node = escape(&g.node);
        let _ = write!(
            s,
            "<div class=\"card\" id=\"node-{node}\"><b>node {node}</b><br><img src=\"{}\" width=\"96\" alt=\"patch of node {node}\"><img src=\"{}\" width=\"96\" alt=\"source image of node {node}\"><br>{}",
            png_data_uri(&g.patch_png),
            png_data_uri(&g.boxed_png),
            escape(&g.caption),
        );
        if !g.facts.is_empty() {
            s.push_str("<table>");
            for (k, v) in &g.facts {
                let _ = write!(s, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
            }
            s.push_str("</table>");
        }
        if !g.top_patches.is_empty() {
            let _ = write!(
                s,
                "<div>{} most similar training patches:</div><div class=\"tops\">",
                g.top_patches.len()
            );
            for p in &g.top_patches {
                let caption = escape(&p.caption);
                let _ = write!(
                    s,
                    "<img src=\"{}\" alt=\"{caption}\" title=\"{caption}\">",
                    png_data_uri(&p.png)
                );
            }
            s.push_str("</div>");
        }
        s.push_str("</div>\n");
    }
    s.push_str("</div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_show_facts_and_top_patches_escaped() {
        let entry = GalleryEntry {
            node: "3".into(),
            patch_png: vec![1],
            boxed_png: vec![2],
            caption: "from a.png".into(),
            facts: vec![("purity (top 10)".into(), "90% <wing>".into())],
            top_patches: vec![
                GalleryPatch {
                    png: vec![3],
                    caption: "class \"b\"".into(),
                };
                10
            ],
        };
        let mut s = String::new();
        write_gallery(&mut s, &[entry]);
        assert!(s.contains("id=\"node-3\""));
        assert!(s.contains("<th>purity (top 10)</th><td>90% &lt;wing&gt;</td>"));
        assert!(s.contains("10 most similar training patches"));
        assert_eq!(s.matches("title=\"class &quot;b&quot;\"").count(), 10);
        let mut plain = String::new();
        write_gallery(
            &mut plain,
            &[GalleryEntry {
                node: "0".into(),
                ..Default::default()
            }],
        );
        assert!(!plain.contains("<table>") && !plain.contains("most similar"));
    }

    #[test]
    fn the_viewer_inlines_the_svg_without_its_prolog() {
        let mut s = String::new();
        write_tree_viewer(&mut s, "<?xml version=\"1.0\"?>\n<svg></svg>");
        assert!(s.contains("<svg></svg>") && !s.contains("<?xml"));
        assert!(s.contains("id=\"node-panel\""));
        assert!(s.contains("data-f=\"0\""));
    }
}
