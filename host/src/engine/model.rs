//! [`Model`]: a plugin network with the host's view of its parameters.

use abi_stable::std_types::RStr;
use niftyhost_plugin_api::{NamedTensor, NetworkBox, PluginError, RTensor};
use tch::{Device, Tensor};

use crate::config::Settings;
use crate::data::ChannelLayout;
use crate::plugins::{Registry, RegistryError};

/// A network instance and shallow clones of its parameters and buffers (sharing storage
/// and gradients with the plugin's own tensors).
pub struct Model {
    /// The network's name (for messages).
    pub name: String,
    net: NetworkBox,
    /// Trainable parameters, sorted by name.
    pub params: Vec<(String, Tensor)>,
    /// Non-trainable state, sorted by name.
    pub buffers: Vec<(String, Tensor)>,
    /// The channels of each image section the network takes (`in_channels` is their
    /// total); checkpoints and bundles record it.
    pub channels: ChannelLayout,
    /// The classes its outputs must have (`segmentation.num_classes`).
    pub num_classes: usize,
}

fn named(list: abi_stable::std_types::RVec<NamedTensor>) -> Vec<(String, Tensor)> {
    list.into_iter().map(|n| (n.name.into_string(), n.tensor.into_tch())).collect()
}

impl Model {
    /// Builds the configured network through the registry, on `device`, for images with
    /// the channels of `channels`.
    ///
    /// # Errors
    /// The network is not found, or the plugin refuses its parameters or the device.
    pub fn build(
        registry: &Registry,
        settings: &Settings,
        channels: ChannelLayout,
        device: Device,
    ) -> Result<Model, RegistryError> {
        let name = settings.network.name.clone();
        let net = registry.new_network(&name, &Model::network_config(settings, channels.total()))?;
        let plugin_error = |error: PluginError| RegistryError::Plugin {
            kind: "network",
            name: name.clone(),
            file: registry
                .find(niftyhost_plugin_api::ComponentKind::Network, &name)
                .map(|(l, _)| l.path.clone())
                .unwrap_or_default(),
            error,
        };
        let num_classes = settings.segmentation.num_classes;
        let mut model =
            Model { name: name.clone(), net, params: Vec::new(), buffers: Vec::new(), channels, num_classes };
        let device_name = match device {
            Device::Cuda(i) => format!("cuda:{i}"),
            Device::Mps => "mps".to_owned(),
            _ => "cpu".to_owned(),
        };
        model.net.set_device(RStr::from(device_name.as_str())).into_result().map_err(plugin_error)?;
        model.refresh().map_err(plugin_error)?;
        Ok(model)
    }

    /// The parameters the network plugin is built with: `[network.params]`, the input
    /// channels (`in_channels`: the total of a [`ChannelLayout`]) and the class count.
    pub fn network_config(settings: &Settings, in_channels: usize) -> serde_json::Value {
        let mut config = serde_json::Value::Object(settings.network.params.clone());
        config["in_channels"] = serde_json::json!(in_channels);
        config["num_classes"] = serde_json::json!(settings.segmentation.num_classes);
        config["spatial_dims"] = serde_json::json!(3);
        config
    }

    /// Re-fetches parameters and buffers (after the plugin moved them).
    ///
    /// # Errors
    /// The plugin's error.
    pub fn refresh(&mut self) -> Result<(), PluginError> {
        self.params = named(self.net.named_parameters().into_result()?);
        self.buffers = named(self.net.named_buffers().into_result()?);
        Ok(())
    }

    /// Runs the network and checks that its output has the input's batch size and
    /// [`Model::num_classes`] classes on five axes.
    ///
    /// # Shapes
    /// `[N, C, D, H, W]` → `[N, K, D, H, W]`
    ///
    /// # Errors
    /// The plugin's error, e.g. an input size the architecture cannot take, or an output
    /// of another shape (both sizes named).
    pub fn forward(&mut self, input: &Tensor, train: bool) -> Result<Tensor, PluginError> {
        let x = RTensor::from_tch(input.shallow_clone());
        let out = self.net.forward(&x, train).into_result().map(RTensor::into_tch)?;
        self.check_output(&out, input, "")?;
        Ok(out)
    }

    /// Runs the network and returns every output it has: the main one (as
    /// [`Model::forward`]'s) then its auxiliary outputs for deep supervision, finer first
    /// (none for a network without, or built against plugin-api 1.0 or 1.1). Each is
    /// checked like [`Model::forward`]'s output, and each auxiliary output's spatial size
    /// must divide the main one's.
    ///
    /// # Shapes
    /// `[N, C, D, H, W]` → `[N, K, D, H, W]`, then `[N, K, D / f_D, H / f_H, W / f_W]`
    ///
    /// # Errors
    /// The plugin's error, no output, or an output of another shape (sizes named).
    pub fn forward_outputs(&mut self, input: &Tensor, train: bool) -> Result<Vec<Tensor>, PluginError> {
        let x = RTensor::from_tch(input.shallow_clone());
        let outputs: Vec<Tensor> =
            self.net.forward_outputs(&x, train).into_result()?.into_iter().map(RTensor::into_tch).collect();
        let Some(main) = outputs.first() else {
            return Err(PluginError::new("returned no output from forward_outputs (expected the main output first)"));
        };
        self.check_output(main, input, "")?;
        let main_size = main.size();
        for (i, aux) in outputs.iter().enumerate().skip(1) {
            self.check_output(aux, input, &format!("auxiliary output {i}: "))?;
            let size = aux.size();
            if size[2..].iter().zip(&main_size[2..]).any(|(&a, &m)| a < 1 || m % a != 0) {
                return Err(PluginError::new(format!(
                    "auxiliary output {i}: returned a tensor of shape {size:?}, whose spatial size does not divide \
                     the main output's {main_size:?}: deep supervision needs integer subsampling factors"
                )));
            }
        }
        Ok(outputs)
    }

    /// Checks that `out` has the input's batch size and [`Model::num_classes`] classes on
    /// five axes; `which` prefixes the message.
    fn check_output(&self, out: &Tensor, input: &Tensor, which: &str) -> Result<(), PluginError> {
        let size = out.size();
        let batch = input.size().first().copied().unwrap_or(0);
        if size.len() != 5 || size[0] != batch || size[1] != self.num_classes as i64 {
            return Err(PluginError::new(format!(
                "{which}returned a tensor of shape {size:?} for an input of {:?}: expected [N, K, D, H, W] with N = \
                 {batch} windows and K = {} classes (segmentation.num_classes)",
                input.size(),
                self.num_classes
            )));
        }
        Ok(())
    }

    /// Class probabilities without gradients (softmax over the class axis).
    ///
    /// # Shapes
    /// `[N, C, D, H, W]` → `[N, K, D, H, W]`
    ///
    /// # Errors
    /// The plugin's error.
    pub fn probabilities(&mut self, input: &Tensor) -> Result<Tensor, PluginError> {
        let logits = tch::no_grad(|| self.forward(input, false))?;
        logits.f_softmax(1, tch::Kind::Float).map_err(|e| PluginError::new(format!("softmax of the output: {e}")))
    }

    /// Number of trainable scalars.
    pub fn parameter_count(&self) -> i64 {
        self.params.iter().map(|(_, t)| t.numel() as i64).sum()
    }

    /// Parameters then buffers, the tensors a checkpoint holds.
    pub fn state(&self) -> impl Iterator<Item = &(String, Tensor)> {
        self.params.iter().chain(self.buffers.iter())
    }
}
